"""Limits and privileges (issue 10): memory_limit refuses publishes while messages hold
too much memory and recovers when they are delivered; `user` drops root after the
listeners are open; files midge creates are not world-readable."""

import os
import pwd
import stat
import subprocess
import unittest

from midgetest import (Broker, BrokerTest, RawClient, broker_bin, only_midge, wait_until, PUBACK,
                       QUIET, TIMEOUT)


@only_midge("midge memory_limit")
class MemoryLimit(BrokerTest):
    # Room for roughly 50 queued 2 KiB messages.
    CONFIG = ["memory_limit 120000", "max_queued_messages 100000"]

    def test_publishes_refused_above_the_limit_and_accepted_again(self):
        sub = RawClient(self.port, 5)
        self._clients.append(sub)
        sub.connect("ml-sub", clean=True, props=[("session_expiry", 300)])
        sub.subscribe("ml/#", 1)
        sub.disconnect()
        # Offline before publishing, else its socket takes the messages instead of the queue.
        self.broker.wait_log(lambda l: "client disconnected client=ml-sub " in l,
                             what="ml-sub offline")
        v5 = RawClient(self.port, 5)
        self._clients.append(v5)
        v5.connect("ml-pub5")
        payload = b"x" * 2048
        codes = []
        # The broker looks at the limit at most every 10 ms: on a fast run 200
        # publishes fit in one interval, so allow for many more.
        for i in range(5000):
            codes.append(v5.publish("ml/t", payload, qos=1).rc)
            if codes[-1] == 0x97:
                break
        self.assertEqual(codes[-1], 0x97, "v5 QoS 1 refused with Quota exceeded once over the limit")
        self.assertGreater(len(codes), 20, "messages were accepted up to the limit")
        self.broker.wait_log(lambda l: "memory_limit reached" in l, what="the limit logged")
        # MQTT 3.1.1: no acknowledgement, so the client sends again later.
        v3 = RawClient(self.port, 4)
        self._clients.append(v3)
        v3.connect("ml-pub3")
        pid = v3.publish("ml/t", payload, qos=1, wait_ack=False)
        self.assertRaises(AssertionError, v3.expect, PUBACK, QUIET)
        # The subscriber takes its messages: memory is freed and publishes are accepted again.
        sub = RawClient(self.port, 5)
        self._clients.append(sub)
        sub.connect("ml-sub", clean=False, props=[("session_expiry", 300)])
        sub.recv_publishes(len(codes) - 1, timeout=10)
        wait_until(lambda: v5.publish("ml/t", b"small", qos=1).rc == 0, timeout=5,
                   what="publishes accepted again after the queue drained")
        self.broker.wait_log(lambda l: "below the limit again" in l, what="recovery logged")


@only_midge("midge privileges")
@unittest.skipUnless(os.geteuid() == 0, "needs root to test dropping privileges")
class User(unittest.TestCase):

    def test_switches_to_user_after_listening(self):
        b = Broker(["user nobody"]).start()
        try:
            b.wait_log(lambda l: "switched to user=nobody" in l, what="the switch logged")
            with open("/proc/%d/status" % b.proc.pid) as f:
                uids = [l for l in f if l.startswith("Uid:")][0].split()[1:]
            nobody = pwd.getpwnam("nobody").pw_uid
            self.assertEqual({int(u) for u in uids}, {nobody}, "real, effective, saved uid")
            c = RawClient(b.port, 4)
            c.connect("after-drop")
            c.close()
        finally:
            self.assertEqual(b.stop(), 0)

    def test_unknown_user_stops_the_broker(self):
        b = Broker(["user no-such-user-midge"])
        b.port = __import__("midgetest").free_port()
        b.write_config()
        r = subprocess.run([broker_bin(), "-c", b.conf], capture_output=True, text=True,
                           timeout=TIMEOUT * 3)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("user no-such-user-midge", r.stderr)

    def test_log_file_not_world_readable(self):
        d = __import__("tempfile").mkdtemp(prefix="midge-umask-")
        os.chmod(d, 0o755)
        log = os.path.join(d, "midge.log")
        b = Broker(["log_dest file " + log]).start()
        try:
            wait_until(lambda: os.path.exists(log), what="log file")
            mode = stat.S_IMODE(os.stat(log).st_mode)
            self.assertEqual(mode & 0o007, 0, "log file mode %o is world-accessible" % mode)
        finally:
            b.stop()
