"""Command line, config file errors, --test-config, include_dir, SIGTERM, log lines."""

import os
import signal
import subprocess
import tempfile
import time
import unittest

from midgetest import (Broker, BrokerTest, RawClient, broker_bin, tmp_root, DISCONNECT, IS_MOSQUITTO,
                       only_midge, mosquitto_deviation, free_port, HOST)


def write_conf(text, name="t.conf"):
    d = tempfile.mkdtemp(prefix="cfg-", dir=tmp_root())
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def run(*args, timeout=10):
    return subprocess.run([broker_bin()] + list(args), capture_output=True, timeout=timeout, text=True)


@only_midge("midge's command line and error messages")
class CommandLine(unittest.TestCase):

    def test_version(self):
        """--version prints the version and exits 0."""
        r = run("--version")
        self.assertEqual(r.returncode, 0, r)
        self.assertIn("midge", (r.stdout + r.stderr).lower())

    def test_help(self):
        """--help lists the options and exits 0."""
        r = run("--help")
        self.assertEqual(r.returncode, 0, r)
        out = r.stdout + r.stderr
        for opt in ("-c", "--test-config", "-v", "-d", "--version"):
            self.assertIn(opt, out)

    def test_test_config_good(self):
        """--test-config -c GOOD exits 0 without listening."""
        port = free_port()
        conf = write_conf("listener %d 127.0.0.1\nallow_anonymous true\nworker_threads 2\n" % port)
        r = run("--test-config", "-c", conf)
        self.assertEqual(r.returncode, 0, r)

    def test_unknown_option(self):
        """Unknown word: `FILE:LINE: unknown option 'WORD'` on stderr, exit 2 (--test-config and normal start)."""
        conf = write_conf("listener %d 127.0.0.1\n# comment\n\nbogus_word 12\n" % free_port())
        want = "%s:4: unknown option 'bogus_word'" % conf
        r = run("--test-config", "-c", conf)
        self.assertEqual(r.returncode, 2, r)
        self.assertIn(want, r.stderr)
        r = run("-c", conf)
        self.assertEqual(r.returncode, 2, r)
        self.assertIn(want, r.stderr)

    def _bad(self, text, line):
        conf = write_conf(text)
        r = run("--test-config", "-c", conf)
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("%s:%d:" % (conf, line), r.stderr)
        return r.stderr

    def test_malformed_values(self):
        """Malformed values are reported with FILE:LINE and exit 2."""
        for text, line in (("max_queued_messages lots\n", 1),
                           ("allow_anonymous true\nallow_anonymous maybe\n", 2),
                           ("listener\n", 1),
                           ("listener 99999 127.0.0.1\n", 1),
                           ("listener 1883 127.0.0.1\nmax_connections -5x\n", 2),
                           ("persistent_client_expiration 3q\n", 1),
                           ("worker_threads zero\n", 1)):
            with self.subTest(text=text):
                self._bad(text, line)

    def test_per_listener_settings_refused(self):
        """per_listener_settings true is refused with a message saying what to write instead."""
        err = self._bad("per_listener_settings true\n", 1)
        self.assertIn("listener_allow_anonymous", err)

    def test_include_dir_error_names_included_file(self):
        """An error inside include_dir names the included file and its line."""
        d = tempfile.mkdtemp(prefix="inc-", dir=tmp_root())
        with open(os.path.join(d, "a.conf"), "w") as f:
            f.write("max_inflight_messages 3\nnot_a_word x\n")
        conf = write_conf("listener %d 127.0.0.1\ninclude_dir %s\n" % (free_port(), d))
        r = run("--test-config", "-c", conf)
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("%s:2:" % os.path.join(d, "a.conf"), r.stderr)

    def test_bad_config_does_not_listen(self):
        """A broker started with a bad config exits 2 and never accepts connections."""
        port = free_port()
        conf = write_conf("listener %d 127.0.0.1\nmax_packet_size huge\n" % port)
        r = run("-c", conf)
        self.assertEqual(r.returncode, 2)
        import socket
        with self.assertRaises(OSError):
            socket.create_connection((HOST, port), timeout=0.5).close()


class ConfigWords(BrokerTest):
    CONFIG = ["set_tcp_nodelay true", "persistent_client_expiration 1h", "message_size_limit 100000",
              "max_queued_bytes 0", "max_inflight_messages 20", "max_keepalive 65535", "retain_available true",
              "sys_interval 10", "max_connections -1", "queue_qos0_messages false", "max_topic_alias 10"]

    def test_mosquitto_words_accepted(self):
        """A config using mosquitto's words starts and serves clients."""
        c = self.raw(5)
        c.subscribe("cw/t", 1)
        c.publish("cw/t", b"x", qos=1)
        self.assertEqual(c.recv_publish().payload, b"x")


class IncludeDir(unittest.TestCase):

    def test_include_dir_applies(self):
        """Words from include_dir files apply: max_inflight_messages 3 there -> CONNACK Receive Maximum 3."""
        d = tempfile.mkdtemp(prefix="inc-", dir=tmp_root())
        with open(os.path.join(d, "limits.conf"), "w") as f:
            f.write("max_inflight_messages 3\n")
        b = Broker(["include_dir %s" % d]).start()
        try:
            c = RawClient(b.port, 5)
            ca = c.connect("incl")
            self.assertEqual(ca.prop("receive_maximum"), 3, ca)
            c.close()
        finally:
            b.stop()


class Signals(BrokerTest):

    @mosquitto_deviation("2.0.11 closes v5 clients on SIGTERM without DISCONNECT 0x8B")
    def test_sigterm(self):
        """SIGTERM: v5 clients get DISCONNECT 0x8B (Server shutting down), 3.1.1 clients are closed, exit code 0."""
        c5 = self.raw(5)
        c4 = self.raw(4)
        self.broker.proc.send_signal(signal.SIGTERM)
        got = c5.expect_closed(timeout=5)
        d = [p for p in got if p.type == DISCONNECT]
        self.assertTrue(d, "v5 client got no DISCONNECT: %r" % got)
        self.assertEqual(d[-1].rc, 0x8B)
        c4.expect_closed(timeout=5)
        self.assertEqual(self.broker.proc.wait(5), 0)

    def test_sigterm_exit_code(self):
        """SIGTERM stops the broker with exit code 0."""
        self.raw(4)
        self.assertEqual(self.broker.stop(), 0)


@only_midge("log format")
class Logging(BrokerTest):

    def test_connect_and_disconnect_logged(self):
        """Connect and disconnect events are logged, one per line, naming client=ID and addr=."""
        c = self.raw(4, client_id="logme")
        self.broker.wait_log(lambda l: "client=logme" in l and "addr=127.0.0.1:" in l, what="connect line")
        c.close()
        self.broker.wait_log(lambda l: "client=logme" in l and ("disconnect" in l.lower() or "closed" in l.lower()
                                                                or "lost" in l.lower()),
                             what="disconnect line for client=logme")

    def test_protocol_error_logged(self):
        """A protocol-error disconnect is logged with client=ID and a reason."""
        c = self.raw(5, client_id="errlog")
        c.send(b"\x00\x00")
        c.expect_closed()
        self.broker.wait_log(lambda l: "client=errlog" in l and "reason=" in l, what="error line for client=errlog")
