"""Safe defaults (issue 10, docs/security.md): without a configuration midge listens on loopback
only; once listeners are configured, anonymous clients are refused unless `allow_anonymous true`
(or `listener_allow_anonymous true` for one listener) is written. Refusal codes: MQTT 3.1.1 CONNACK
return code 5 Not authorized (3.2.2.3), MQTT 5 CONNACK 0x87 Not authorized (3.2.2.2)."""

import os
import socket
import subprocess
import unittest

from midgetest import (Broker, BrokerTest, RawClient, broker_bin, bstr, free_port, listening_addresses,
                       only_midge, packet,
                       varint, wait_until, CONNECT, TIMEOUT)


class ExactBroker(Broker):
    """A broker whose config is exactly `lines` ({port} and {port2} filled in): no listener or
    allow_anonymous line is added."""

    def __init__(self, lines):
        super().__init__(lines, workers=0, listener=False)
        self.port2 = None

    def config_lines(self):
        if self.port2 is None:
            self.port2 = free_port()
        return [l.format(port=self.port, port2=self.port2) for l in self.extra]


def connack_rc(port, version):
    c = RawClient(port, version)
    try:
        return c.connect("sec-%d" % version, expect_rc=None).rc
    finally:
        c.close()


@only_midge("midge defaults")
class NoConfig(unittest.TestCase):

    def test_without_config_listens_on_loopback_only(self):
        """`midge` with no -c: one listener, 127.0.0.1:1883, and nothing else; anonymous clients are
        allowed there (local-only mode, as mosquitto 2)."""
        probe = socket.socket()
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", 1883))
        except OSError:
            self.skipTest("127.0.0.1:1883 is in use on this machine")
        finally:
            probe.close()
        log = open(os.devnull, "wb")
        p = subprocess.Popen([broker_bin()], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: p.poll() is not None or listening_addresses(p.pid),
                       what="the default listener")
            self.assertIsNone(p.poll(), "midge exited")
            self.assertEqual(listening_addresses(p.pid), [("127.0.0.1", 1883)])
            self.assertEqual(connack_rc(1883, 4), 0)
        finally:
            p.terminate()
            p.wait(TIMEOUT * 3)
            log.close()


@only_midge("midge defaults")
class Anonymous(unittest.TestCase):

    def start(self, *lines):
        b = ExactBroker(list(lines)).start()
        self.addCleanup(b.stop)
        return b

    def test_listener_on_all_addresses_refuses_anonymous_by_default(self):
        """A listener on every address and no allow_anonymous: anonymous CONNECT refused, both
        versions; the same file with `allow_anonymous true` accepts it."""
        b = self.start("listener {port}")
        self.assertIn(("0.0.0.0", b.port), listening_addresses(b.proc.pid))
        self.assertEqual(connack_rc(b.port, 4), 5)
        self.assertEqual(connack_rc(b.port, 5), 0x87)
        b = self.start("listener {port}", "allow_anonymous true")
        self.assertEqual(connack_rc(b.port, 4), 0)

    def test_any_configured_listener_refuses_anonymous_unless_written(self):
        """Configured listeners are closed to anonymous clients even on loopback (stricter than
        only non-loopback ones); listener_allow_anonymous opens one listener and not the other."""
        b = self.start("listener {port} 127.0.0.1")
        self.assertEqual(connack_rc(b.port, 5), 0x87)
        b = self.start("listener {port} 127.0.0.1", "listener_allow_anonymous true",
                       "listener {port2} 127.0.0.1")
        self.assertEqual(connack_rc(b.port, 4), 0)
        self.assertEqual(connack_rc(b.port2, 4), 5)

    def test_default_config_file_listens_on_loopback_only(self):
        """etc/midge.conf as shipped opens loopback listeners only: its anonymous access (if any)
        reaches no other host until someone edits it."""
        conf = os.path.join(os.environ.get("MIDGE_SRCDIR", os.path.join(os.path.dirname(__file__),
                                                                          "..", "..")), "etc", "midge.conf")
        with open(conf) as f:
            active = [l.split() for l in f if l.strip() and not l.lstrip().startswith("#")]
        listeners = [w for w in active if w[0] == "listener"]
        for words in listeners:
            self.assertTrue(len(words) >= 3 and words[2] in ("127.0.0.1", "::1", "localhost"),
                            "etc/midge.conf opens %r to other hosts" % " ".join(words))
        self.assertTrue(listeners, "etc/midge.conf has no listener line: the default applies")


@only_midge("midge's pre-CONNACK packet cap")
class UnauthenticatedSize(BrokerTest):
    """max_packet_size is 0 (the protocol's 256 MB) here, as by default."""

    def test_connect_larger_than_1mib_closed_before_buffering(self):
        """A CONNECT declaring 200 MB is refused from its fixed header: the broker closes without
        reading the body (3.1.1 [MQTT-4.8.0-1] style close; MQTT 5 3.2.2.2 0x95 Packet too large
        needs a version it has not read yet). An unauthenticated client cannot make it buffer more
        than 1 MiB."""
        for version in (4, 5):
            c = RawClient(self.port, version)
            self._clients.append(c)
            c.send(bytes([CONNECT << 4]) + varint(200 * 1024 * 1024) + bstr("MQTT") + bytes([version]))
            c.expect_closed(timeout=TIMEOUT)
        self.broker.wait_log(lambda l: "larger than 1 MiB" in l, what="the refusal logged")
        self.assertTrue(self.raw(5).is_open())

    def test_large_legitimate_connect_still_accepted(self):
        """A CONNECT near the largest one MQTT 3.1.1 allows (65535-byte will payload, user name and
        password: ~200 KB) is below the cap and accepted [MQTT-3.2.2-1]."""
        big = b"p" * 65535
        body = (bstr("MQTT") + bytes([4, 0x02 | 0x04 | 0x80 | 0x40]) + b"\x00\x3c" + bstr("big") +
                bstr("will/big") + bstr(big) + bstr("u" * 65535) + bstr(big))
        c = RawClient(self.port, 4)
        self._clients.append(c)
        c.send(packet(CONNECT, 0, body))
        self.assertEqual(c.expect(2).rc, 0)


if __name__ == "__main__":
    unittest.main()
