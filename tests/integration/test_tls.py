"""TLS and mutual TLS listeners (issue 9).

A CA, server and client certificates are generated with `openssl` for the
run (tests/integration/tlspki.py). Clients: mosquitto_pub/sub (--cafile,
--cert, --key), paho with tls_set, and raw sockets for bad input. Every bad
input case checks that the broker closes quickly, logs one line with the
peer address and OpenSSL's reason, and that another client keeps working.
"""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest

from midgetest import (Broker, BrokerTest, PahoClient, broker_bin, connect_packet, free_port,
                       only_midge, subscribe_packet, tmp_root, wait_until, HOST, TIMEOUT)
from tlspki import PKI

_pki = None


def pki():
    global _pki
    if _pki is None:
        _pki = PKI(tmp_root())
    return _pki


def tls_lines(port, require=False, extra=()):
    p = pki()
    lines = ["listener %d %s" % (port, HOST), "certfile " + p.server_crt,
             "keyfile " + p.server_key, "cafile " + p.ca]
    if require:
        lines.append("require_certificate true")
    return lines + list(extra)


def tls_paho(port, cert=None, key=None, client_id="", version=4, ca=None, **kw):
    c = PahoClient(port, client_id, version, **kw)
    c.c.tls_set(ca_certs=ca or pki().ca, certfile=cert, keyfile=key)
    return c


def mosq(tool, port, *args, cert=None, key=None, ca=None, timeout=TIMEOUT):
    argv = [tool, "-h", HOST, "-p", str(port), "--cafile", ca or pki().ca]
    if cert:
        argv += ["--cert", cert, "--key", key]
    argv += list(args)
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)


def _drain(s):
    """Reads s until it fails (the test closes it)."""
    try:
        while s.recv(65536):
            pass
    except (ssl.SSLError, OSError, ValueError):
        pass


class TLSCase(BrokerTest):
    """A broker with a plain listener (self.port) and a TLS listener (self.tls_port)."""
    REQUIRE = False
    TLS_EXTRA = ()
    EXTRA = ()

    def setUp(self):
        self._clients = []
        self.tls_port = free_port()
        self.broker = Broker(tls_lines(self.tls_port, self.REQUIRE, self.TLS_EXTRA) +
                             list(self.EXTRA)).start()
        self.port = self.broker.port
        self.mark()

    def mark(self):
        """Later closed_log() calls only look at log lines written after this point."""
        self.log_mark = len(self.broker.log_text())

    def tpaho(self, cert=None, key=None, client_id="", connect=True, **kw):
        c = tls_paho(self.tls_port, cert, key, client_id, **kw)
        self._clients.append(c)
        if connect:
            c.connect()
        return c

    def closed_log(self, needle, timeout=TIMEOUT):
        """The broker's close line for a connection, containing needle; returns it."""
        def find():
            for l in self.broker.log_text()[self.log_mark:].splitlines():
                if "connection closed" in l and needle in l:
                    return l
            return None
        return wait_until(find, timeout, what="close log line with %r" % needle)


class TestMutualTLS(TLSCase):
    REQUIRE = True

    def test_good_certificate_mosquitto_clients(self):
        """mosquitto_sub/pub with a client certificate of the trusted CA exchange a message."""
        p = pki()
        sub = self.track(subprocess.Popen(
            ["mosquitto_sub", "-h", HOST, "-p", str(self.tls_port), "--cafile", p.ca, "--cert",
             p.alice_crt, "--key", p.alice_key, "-t", "tls/t", "-C", "1", "-q", "1", "-i", "s1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        self.broker.wait_log(lambda l: "client=s1" in l and "subscribe" in l, what="subscribe")
        r = mosq("mosquitto_pub", self.tls_port, "-t", "tls/t", "-m", "over tls", "-q", "1",
                 cert=p.alice_crt, key=p.alice_key)
        self.assertEqual(r.returncode, 0, r.stdout)
        out, _ = sub.communicate(timeout=TIMEOUT)
        self.assertEqual(out.strip(), b"over tls")

    def test_paho_qos1_large_message(self):
        """paho over TLS: a 300 kB QoS 1 message crosses many TLS records intact."""
        p = pki()
        sub = self.tpaho(p.alice_crt, p.alice_key, "tsub")
        sub.subscribe("big", 1)
        pub = self.tpaho(p.alice_crt, p.alice_key, "tpub")
        payload = os.urandom(300 * 1024)
        pub.publish("big", payload, qos=1)
        m = sub.get()
        self.assertEqual(m.payload, payload)

    def test_no_certificate_when_required(self):
        """require_certificate: a client without a certificate is refused and the reason logged."""
        r = mosq("mosquitto_pub", self.tls_port, "-t", "x", "-m", "x", "-i", "nocert")
        self.assertNotEqual(r.returncode, 0, r.stdout)
        line = self.closed_log("tls handshake failed")
        self.assertIn("127.0.0.1:", line)
        self.assertIn("peer did not return a certificate", line)
        self.assertNotIn("client=nocert", self.broker.log_text())

    def test_certificate_from_another_ca(self):
        """A client certificate signed by an unknown CA fails verification."""
        p = pki()
        r = mosq("mosquitto_pub", self.tls_port, "-t", "x", "-m", "x", cert=p.eve_crt,
                 key=p.eve_key)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.closed_log("unable to get local issuer certificate")

    def test_expired_certificate(self):
        p = pki()
        r = mosq("mosquitto_pub", self.tls_port, "-t", "x", "-m", "x", cert=p.old_crt,
                 key=p.old_key)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.closed_log("certificate has expired")

    def test_good_client_unaffected_by_failed_handshakes(self):
        """Failed handshakes on the same worker leave a connected TLS client working."""
        p = pki()
        c = self.tpaho(p.alice_crt, p.alice_key, "steady")
        c.subscribe("steady/t", 0)
        for _ in range(3):
            mosq("mosquitto_pub", self.tls_port, "-t", "x", "-m", "x", cert=p.eve_crt,
                 key=p.eve_key)
        c.publish("steady/t", b"still here", qos=1)
        self.assertEqual(c.get().payload, b"still here")


class TestCRL(TLSCase):
    REQUIRE = True

    @property
    def TLS_EXTRA(self):
        return ["crlfile " + pki().crl]

    def test_revoked_certificate(self):
        """crlfile: a revoked client certificate is refused; a good one still connects."""
        p = pki()
        r = mosq("mosquitto_pub", self.tls_port, "-t", "x", "-m", "x", cert=p.bob_crt,
                 key=p.bob_key)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.closed_log("certificate revoked")
        r = mosq("mosquitto_pub", self.tls_port, "-t", "x", "-m", "x", cert=p.alice_crt,
                 key=p.alice_key)
        self.assertEqual(r.returncode, 0, r.stdout)


class TestIdentityAsUsername(TLSCase):
    """use_identity_as_username with a per-user ACL (the %u pattern of an ACL file)."""
    REQUIRE = True
    TLS_EXTRA = ["use_identity_as_username true"]

    @property
    def EXTRA(self):
        from test_plugins import need_plugins, so  # noqa: F401
        return ["allow_anonymous false", "plugin " + so("tls_info")]

    def setUp(self):
        from test_plugins import _FOUND
        if not _FOUND:
            self.skipTest("test plugins not found (run through make check)")
        super().setUp()

    def test_identity_is_username_for_acl(self):
        """The CN (alice) replaces the CONNECT username; the ACL sees it."""
        p = pki()
        c = self.tpaho(p.alice_crt, p.alice_key, "alice-1", connect=False)
        c.c.username_pw_set("mallory", "whatever")
        c.connect()
        self.assertEqual(c.rc, 0)
        self.broker.wait_log(lambda l: "client=alice-1" in l and "user=alice" in l,
                             what="connect line with user=alice")
        c.subscribe("u/alice/#", 1)
        c.publish("u/alice/x", b"mine", qos=1)
        self.assertEqual(c.get().payload, b"mine")
        # bob (another certificate) owns u/bob/: alice may not publish there.
        bob = self.tpaho(p.bob_crt, p.bob_key, "bob-1")
        bob.subscribe("u/bob/#", 1)
        self.assertEqual(c.subscribe("u/bob/#", 1), (128,))  # SUBACK failure: ACL denied
        c.publish("u/bob/x", b"intrusion", qos=1)
        bob.publish("u/bob/x", b"own", qos=1)
        self.assertEqual(bob.get().payload, b"own")  # the denied message never arrived first
        bob.none()
        # A plain-TCP client has no certificate: allow_anonymous false refuses it.
        spy = self.paho("spy")
        self.assertNotEqual(spy.rc, 0)

    def test_plugin_sees_tls_details(self):
        """api->client_tls: version, cipher, subject, SAN, verified; 'plain' on TCP."""
        p = pki()
        watcher = self.tpaho(p.alice_crt, p.alice_key, "watcher")
        watcher.subscribe("tls/info/#", 0)
        self.tpaho(p.alice_crt, p.alice_key, "probe")
        m = watcher.get()
        while m.topic != "tls/info/probe":
            m = watcher.get()
        info = m.payload.decode()
        self.assertIn("user=alice", info)
        self.assertIn("version=TLSv1.3", info)
        # RFC 2253 writes the last RDN first; `openssl ca` put CN before O in the certificate.
        self.assertIn("subject=O=Midge Test,CN=alice", info)
        self.assertIn("san=alice@example.com", info)
        self.assertIn("verified=1", info)
        self.assertIn("issuer=CN=midge test ca", info)
        self.assertIn("sans=alice@example.com,alice.example.com,10.1.2.3", info)


class TestSubjectAsUsername(TLSCase):
    """use_subject_as_username: the whole subject (RFC 2253) is the username."""
    REQUIRE = True
    TLS_EXTRA = ["use_subject_as_username true"]
    EXTRA = ["allow_anonymous false"]

    def test_subject_is_username(self):
        p = pki()
        c = self.tpaho(p.alice_crt, p.alice_key, "subj-1", connect=False)
        c.c.username_pw_set("mallory")
        c.connect()
        self.assertEqual(c.rc, 0)
        self.broker.wait_log(lambda l: "client=subj-1" in l and "user=O=Midge Test,CN=alice" in l,
                             what="connect line with the subject as user")


class TestTLSBadInput(TLSCase):
    EXTRA = ["connect_timeout 1"]

    def steady(self):
        c = self.tpaho(client_id="steady")
        c.subscribe("steady", 0)
        return c

    def check_steady(self, c):
        c.publish("steady", b"ok", qos=1)
        self.assertEqual(c.get().payload, b"ok")

    def test_garbage_bytes_on_tls_port(self):
        c = self.steady()
        s = socket.create_connection((HOST, self.tls_port))
        s.sendall(os.urandom(64) + b"\x00" * 64)
        s.settimeout(TIMEOUT)
        t0 = time.monotonic()
        while s.recv(4096):
            pass
        self.assertLess(time.monotonic() - t0, TIMEOUT)
        line = self.closed_log("tls handshake failed")
        self.assertIn("addr=127.0.0.1:%d" % s.getsockname()[1], line)
        s.close()
        self.check_steady(c)

    def test_silent_client_times_out(self):
        """A client that sends nothing after TCP connect is closed after connect_timeout."""
        c = self.steady()
        s = socket.create_connection((HOST, self.tls_port))
        s.settimeout(5)
        self.assertEqual(s.recv(4096), b"")
        self.closed_log("tls handshake timeout")
        s.close()
        self.check_steady(c)

    def test_plaintext_mqtt_on_tls_port(self):
        c = self.steady()
        s = socket.create_connection((HOST, self.tls_port))
        s.sendall(connect_packet("plain-on-tls"))
        s.settimeout(TIMEOUT)
        data = s.recv(4096)
        # No CONNACK: at most a TLS alert record (content type 21) comes back.
        self.assertTrue(data == b"" or data[0] == 21, data)
        self.closed_log("tls handshake failed")
        self.assertNotIn("client=plain-on-tls", self.broker.log_text())
        s.close()
        self.check_steady(c)

    def test_tls_client_on_plain_port(self):
        c = self.steady()
        ctx = ssl.create_default_context(cafile=pki().ca)
        raw = socket.create_connection((HOST, self.port))
        with self.assertRaises((ssl.SSLError, OSError)):
            ctx.wrap_socket(raw, server_hostname="localhost").close()
        raw.close()
        self.closed_log("tls handshake on a plain listener")
        self.check_steady(c)

    def test_close_notify_with_output_pending(self):
        """A client that closes while output for it is still queued.

        The broker's last flush then writes to a dead socket after the peer's
        close; that must end the connection (an earlier version took OpenSSL's
        "zero return" on that write for 0 bytes written and spun forever)."""
        pub = self.paho("flooder")
        big = b"x" * 60000
        for i in range(6):  # a race on the client's side: several tries
            ctx = ssl.create_default_context(cafile=pki().ca)
            s = ctx.wrap_socket(socket.create_connection((HOST, self.tls_port)),
                                server_hostname="localhost")
            s.sendall(connect_packet("notify-%d" % i))
            self.assertEqual(s.recv(4)[:1], b"\x20")  # CONNACK
            s.sendall(subscribe_packet(1, [("flood", 0)]))
            self.assertEqual(s.recv(5)[:1], b"\x90")  # SUBACK
            # The client keeps reading (its window stays open, the broker's
            # writes succeed) while far more is published than it can take.
            reader = threading.Thread(target=_drain, args=(s,), daemon=True)
            reader.start()
            for _ in range(150):  # ~9 MB
                pub.publish("flood", big, qos=0)
            # A TCP FIN (SSL_OP_IGNORE_UNEXPECTED_EOF makes it a close_notify),
            # then the close: the broker's next writes meet a reset socket.
            s.shutdown(socket.SHUT_RDWR)
            reader.join(TIMEOUT)
            s.close()
            self.broker.wait_log(lambda l: "client=notify-%d " % i in l and "disconnected" in l,
                                 timeout=TIMEOUT * 2, what="disconnect line of notify-%d" % i)
        c = self.steady()
        self.check_steady(c)

    def test_session_resumption(self):
        """A client resumes its TLS session with the ticket of its previous connection."""
        ctx = ssl.create_default_context(cafile=pki().ca)
        with ctx.wrap_socket(socket.create_connection((HOST, self.tls_port)),
                             server_hostname="localhost") as s:
            s.sendall(connect_packet("resume-1"))
            self.assertEqual(s.recv(4)[:1], b"\x20")  # CONNACK; the ticket came before it
            session = s.session
            self.assertFalse(s.session_reused)
        with ctx.wrap_socket(socket.create_connection((HOST, self.tls_port)),
                             server_hostname="localhost", session=session) as s:
            s.sendall(connect_packet("resume-2"))
            self.assertEqual(s.recv(4)[:1], b"\x20")
            self.assertTrue(s.session_reused)

    def test_alpn_mqtt_and_none(self):
        """ALPN: "mqtt" is selected when offered; other lists go on without ALPN."""
        for offer, want in ((["mqtt"], "mqtt"), (["x-unknown"], None), (None, None)):
            ctx = ssl.create_default_context(cafile=pki().ca)
            if offer:
                ctx.set_alpn_protocols(offer)
            with ctx.wrap_socket(socket.create_connection((HOST, self.tls_port)),
                                 server_hostname="localhost") as s:
                self.assertEqual(s.selected_alpn_protocol(), want)
                s.sendall(connect_packet("alpn"))
                self.assertEqual(s.recv(4)[:1], b"\x20")  # CONNACK


class TestTLSVersion(TLSCase):
    TLS_EXTRA = ["tls_version tlsv1.3"]

    def test_tls12_client_refused(self):
        ctx = ssl.create_default_context(cafile=pki().ca)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with self.assertRaises(ssl.SSLError):
            ctx.wrap_socket(socket.create_connection((HOST, self.tls_port)),
                            server_hostname="localhost")
        self.closed_log("unsupported protocol")


PSK_KEYS = {"alice": "00112233445566778899aabbccddeeff", "bob": "deadbeefcafef00d"}


def psk_file(path):
    """A psk_file in mosquitto's format (identity:hexkey), with a comment and a blank line."""
    with open(path, "w") as f:
        f.write("# test keys\n\n")
        for ident, key in sorted(PSK_KEYS.items()):
            f.write("%s:%s\n" % (ident, key))
    return path


def mosq_psk(tool, port, identity, key, *args, version=None, timeout=TIMEOUT):
    argv = [tool, "-h", HOST, "-p", str(port), "--psk", key, "--psk-identity", identity]
    if version:
        argv += ["--tls-version", version]
    return subprocess.run(argv + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout)


@only_midge("log lines")
class TestPSK(BrokerTest):
    """TLS-PSK: psk_hint on a listener, keys from psk_file, the identity as username.

    The clients are mosquitto_pub/sub with --psk/--psk-identity, over TLS 1.2
    (a PSK cipher suite, the hint is sent) and TLS 1.3 (an external PSK).
    """

    def setUp(self):
        self._clients = []
        d = os.path.join(tmp_root(), "psk-%d-%d" % (os.getpid(), time.monotonic_ns()))
        os.makedirs(d)
        self.psk_port = free_port()
        self.psk_path = psk_file(os.path.join(d, "psk.txt"))
        self.broker = Broker(["psk_file " + self.psk_path,
                              "listener %d %s" % (self.psk_port, HOST), "psk_hint midge-test",
                              "use_identity_as_username true"]).start()
        self.port = self.broker.port

    def sub(self, identity, topic):
        """A mosquitto_sub over PSK waiting for one message; returned once subscribed."""
        p = subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", str(self.psk_port), "--psk",
                              PSK_KEYS[identity], "--psk-identity", identity, "-t", topic,
                              "-C", "1", "-W", str(int(TIMEOUT * 3)), "-q", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait()))
        # Its stdout is a pipe (block-buffered): the broker's log says when it subscribed.
        self.broker.wait_log(lambda l: "subscribe" in l and "topic=%s " % topic in l + " ",
                             what="psk subscriber on " + topic)
        return p

    def test_psk_tls12_and_tls13_identity_is_username(self):
        """Both TLS versions; the identity replaces the CONNECT username (-u mallory)."""
        for version in ("tlsv1.2", "tlsv1.3"):
            s = self.sub("alice", "psk/" + version)
            r = mosq_psk("mosquitto_pub", self.psk_port, "bob", PSK_KEYS["bob"], "-t",
                         "psk/" + version, "-m", "over " + version, "-q", "1", "-u", "mallory",
                         "-i", "pub-" + version, version=version)
            self.assertEqual(r.returncode, 0, r.stdout)
            out, _ = s.communicate(timeout=TIMEOUT * 3)
            self.assertIn(b"over " + version.encode(), out, self.broker.log_text()[-3000:])
            self.broker.wait_log(lambda l: "client=pub-%s" % version in l and "user=bob" in l,
                                 what="connect line with user=bob")
        self.assertNotIn("user=mallory", self.broker.log_text())

    def test_wrong_key_and_unknown_identity_refused(self):
        r = mosq_psk("mosquitto_pub", self.psk_port, "alice", "00112233445566778899aabbccddee00",
                     "-t", "x", "-m", "x")
        self.assertNotEqual(r.returncode, 0)
        r = mosq_psk("mosquitto_pub", self.psk_port, "carol", PSK_KEYS["alice"], "-t", "x",
                     "-m", "x", version="tlsv1.2")
        self.assertNotEqual(r.returncode, 0)
        self.broker.wait_log(lambda l: "connection closed" in l and "unknown PSK identity" in l,
                             what="close line for the unknown identity")
        # Nothing else disturbed: a good client still gets through.
        r = mosq_psk("mosquitto_pub", self.psk_port, "alice", PSK_KEYS["alice"], "-t", "x",
                     "-m", "x")
        self.assertEqual(r.returncode, 0, r.stdout)

    def test_sighup_reloads_psk_file(self):
        """New handshakes use the keys of the rewritten psk_file; a broken file keeps the old."""
        new_key = "0f" * 32
        with open(self.psk_path, "w") as f:
            f.write("alice:%s\n" % new_key)
        n = self.broker.log_text().count("tls certificate reloaded")
        self.broker.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.broker.log_text().count("tls certificate reloaded") > n,
                   what="reload")
        r = mosq_psk("mosquitto_pub", self.psk_port, "alice", new_key, "-t", "x", "-m", "x")
        self.assertEqual(r.returncode, 0, r.stdout)
        r = mosq_psk("mosquitto_pub", self.psk_port, "bob", PSK_KEYS["bob"], "-t", "x", "-m", "x")
        self.assertNotEqual(r.returncode, 0)
        with open(self.psk_path, "w") as f:
            f.write("alice:zz00\n")
        self.broker.proc.send_signal(signal.SIGHUP)
        self.broker.wait_log(lambda l: "tls reload failed" in l and "key is not hexadecimal" in l,
                             what="reload failure line: " + self.broker.log_text()[-800:])
        r = mosq_psk("mosquitto_pub", self.psk_port, "alice", new_key, "-t", "x", "-m", "x")
        self.assertEqual(r.returncode, 0, r.stdout)

    def test_certificate_client_on_psk_only_listener_refused(self):
        """A listener with psk_hint and no certfile speaks PSK only."""
        ctx = ssl.create_default_context(cafile=pki().ca)
        with self.assertRaises((ssl.SSLError, OSError)):
            ctx.wrap_socket(socket.create_connection((HOST, self.psk_port)),
                            server_hostname="localhost").close()


def rsa_server(d):
    """An RSA server certificate (self-signed): DHE suites need RSA, the PKI is EC."""
    crt, key = os.path.join(d, "rsa.crt"), os.path.join(d, "rsa.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return crt, key


def dhparams(path):
    subprocess.run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt",
                    "group:ffdhe2048", "-out", path], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    return path


class TestDHParams(BrokerTest):
    """dhparamfile: DHE cipher suites in TLS 1.2 work with it and not without it."""

    def setUp(self):
        self._clients = []
        d = os.path.join(tmp_root(), "dh-%d-%d" % (os.getpid(), time.monotonic_ns()))
        os.makedirs(d)
        self.crt, key = rsa_server(d)
        self.dh_port, self.nodh_port = free_port(), free_port()
        self.broker = Broker([
            "listener %d %s" % (self.dh_port, HOST), "certfile " + self.crt, "keyfile " + key,
            "dhparamfile " + dhparams(os.path.join(d, "dh.pem")),
            "listener %d %s" % (self.nodh_port, HOST), "certfile " + self.crt,
            "keyfile " + key]).start()
        self.port = self.broker.port

    def dhe_client(self, port):
        ctx = ssl.create_default_context(cafile=self.crt)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("DHE-RSA-AES128-GCM-SHA256")
        return ctx.wrap_socket(socket.create_connection((HOST, port)), server_hostname="localhost")

    def test_dhe_with_dhparamfile(self):
        with self.dhe_client(self.dh_port) as s:
            self.assertEqual(s.cipher()[0], "DHE-RSA-AES128-GCM-SHA256")
            s.sendall(connect_packet("dhe"))
            self.assertEqual(s.recv(4)[:1], b"\x20")  # CONNACK

    def test_no_dhe_without_dhparamfile(self):
        with self.assertRaises(ssl.SSLError):
            self.dhe_client(self.nodh_port)


def _peer_cert(port):
    ctx = ssl.create_default_context(cafile=pki().ca)
    with ctx.wrap_socket(socket.create_connection((HOST, port)), server_hostname="localhost") as s:
        return s.getpeercert(binary_form=True)


def _der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class TestReload(BrokerTest):
    """SIGHUP: new certificates for new handshakes, existing connections untouched."""

    def setUp(self):
        p = pki()
        self.dir = os.path.join(tmp_root(), "reload-%d" % os.getpid())
        os.makedirs(self.dir, exist_ok=True)
        self.crt = os.path.join(self.dir, "server.crt")
        self.key = os.path.join(self.dir, "server.key")
        shutil.copy(p.server_crt, self.crt)
        shutil.copy(p.server_key, self.key)
        self._clients = []
        self.tls_port = free_port()
        self.broker = Broker(["listener %d %s" % (self.tls_port, HOST), "certfile " + self.crt,
                              "keyfile " + self.key]).start()
        self.port = self.broker.port

    def hup(self, what):
        n = self.broker.log_text().count(what)
        self.broker.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.broker.log_text().count(what) > n, what=what)

    def test_sighup_reloads_certificate(self):
        p = pki()
        self.assertEqual(_peer_cert(self.tls_port), _der(p.server_crt))
        old = tls_paho(self.tls_port, client_id="old-conn")
        self._clients.append(old)
        old.connect()
        old.subscribe("r", 1)
        shutil.copy(p.server2_crt, self.crt)
        shutil.copy(p.server2_key, self.key)
        self.hup("tls certificate reloaded")
        self.assertEqual(_peer_cert(self.tls_port), _der(p.server2_crt))
        # The connection made before the reload is untouched.
        old.publish("r", b"after reload", qos=1)
        self.assertEqual(old.get().payload, b"after reload")

    def test_broken_key_keeps_old_certificate(self):
        p = pki()
        # A handshake first: the main loop (and its SIGHUP handler) is running.
        self.assertEqual(_peer_cert(self.tls_port), _der(p.server_crt))
        with open(self.key, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        self.hup("tls reload failed, keeping the current certificate")
        line = [l for l in self.broker.log_text().splitlines() if "tls reload failed" in l][-1]
        self.assertIn("keyfile", line)
        self.assertEqual(_peer_cert(self.tls_port), _der(p.server_crt))


@only_midge()
class TestTLSConfigErrors(unittest.TestCase):
    """Bad TLS configuration: FILE:LINE: what is wrong, exit code 2, before anything opens."""

    def check(self, lines, expect, line_no=None):
        d = os.path.join(tmp_root(), "cfg-%d-%d" % (os.getpid(), time.monotonic_ns()))
        os.makedirs(d)
        conf = os.path.join(d, "m.conf")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = subprocess.run([broker_bin(), "--test-config", "-c", conf], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        err = r.stderr.decode()
        self.assertIn(expect, err)
        if line_no is not None:
            self.assertTrue(err.startswith("%s:%d: " % (conf, line_no)), err)
        return err

    def test_valid_tls_and_websocket_config(self):
        """The positive case: --test-config accepts a complete TLS + wss configuration."""
        p = pki()
        d = os.path.join(tmp_root(), "cfg-ok-%d" % os.getpid())
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "ok.conf")
        with open(conf, "w") as f:
            f.write("\n".join([
                "listener 8883", "certfile " + p.server_crt, "keyfile " + p.server_key,
                "cafile " + p.ca, "crlfile " + p.crl, "require_certificate true",
                "use_identity_as_username true", "tls_version tlsv1.3",
                "ciphers ECDHE+AESGCM", "ciphers_tls1.3 TLS_AES_128_GCM_SHA256",
                "listener 8443", "protocol websockets", "certfile " + p.server_crt,
                "keyfile " + p.server_key, "websockets_path /mqtt /ws",
                "websockets_origin https://a.example"]) + "\n")
        r = subprocess.run([broker_bin(), "--test-config", "-c", conf], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(b"configuration OK", r.stdout)

    def test_certfile_without_keyfile(self):
        self.check(["listener 8883", "certfile " + pki().server_crt], "certfile needs keyfile", 1)

    def test_unreadable_key(self):
        self.check(["listener 8883", "certfile " + pki().server_crt, "keyfile /nonexistent/k.pem"],
                   "keyfile: cannot read '/nonexistent/k.pem'", 3)

    def test_key_that_is_not_a_key(self):
        bad = os.path.join(tmp_root(), "bad-%d.key" % os.getpid())
        with open(bad, "w") as f:
            f.write("garbage\n")
        self.check(["listener 8883", "certfile " + pki().server_crt, "keyfile " + bad],
                   "keyfile '%s'" % bad, 1)

    def test_key_of_another_certificate(self):
        self.check(["listener 8883", "certfile " + pki().server_crt, "keyfile " + pki().alice_key],
                   "key values mismatch", 1)

    def test_require_certificate_without_ca(self):
        self.check(["listener 8883", "certfile " + pki().server_crt, "keyfile " + pki().server_key,
                    "require_certificate true"], "require_certificate needs cafile or capath", 1)

    def test_tls_words_without_certfile(self):
        self.check(["listener 8883", "cafile " + pki().ca], "TLS options need certfile", 1)

    def test_bad_tls_version(self):
        self.check(["listener 8883", "tls_version tlsv1.1"], "tls_version: tlsv1.1 is not supported", 2)

    def test_bad_ciphers(self):
        self.check(["listener 8883", "certfile " + pki().server_crt, "keyfile " + pki().server_key,
                    "ciphers NOT-A-CIPHER"], "ciphers 'NOT-A-CIPHER'", 1)

    def test_dhparamfile_not_dh_parameters(self):
        bad = os.path.join(tmp_root(), "bad-dh-%d.pem" % os.getpid())
        with open(bad, "w") as f:
            f.write("garbage\n")
        self.check(["listener 8883", "certfile " + pki().server_crt, "keyfile " + pki().server_key,
                    "dhparamfile " + bad], "dhparamfile '%s': no PEM DH parameters" % bad, 1)
        self.check(["listener 8883", "certfile " + pki().server_crt, "keyfile " + pki().server_key,
                    "dhparamfile " + pki().ca], "dhparamfile '%s': no PEM DH parameters" % pki().ca, 1)

    def test_dhparamfile_missing(self):
        self.check(["listener 8883", "certfile " + pki().server_crt, "keyfile " + pki().server_key,
                    "dhparamfile /nonexistent/dh.pem"], "dhparamfile: cannot read", 4)

    def test_psk_hint_without_psk_file(self):
        self.check(["listener 8883", "psk_hint h"], "psk_hint needs psk_file", 1)

    def test_bad_psk_file(self):
        bad = os.path.join(tmp_root(), "bad-psk-%d.txt" % os.getpid())
        for content, why in (("alice:0011\nbob:xyz0\n", "line 2: key is not hexadecimal"),
                             ("# c\nalice\n", "line 2: expected identity:hexkey"),
                             ("alice:001\n", "line 1: key has an odd number of hex digits"),
                             ("alice:00\nalice:11\n", "identity 'alice' appears twice")):
            with open(bad, "w") as f:
                f.write(content)
            self.check(["psk_file " + bad, "listener 8883", "psk_hint h"],
                       "psk_file '%s' " % bad if "line" in why else "psk_file '%s'" % bad, 2)
            self.check(["psk_file " + bad, "listener 8883", "psk_hint h"], why, 2)

    def test_identity_as_username_needs_certificate_or_psk(self):
        self.check(["listener 8883", "certfile " + pki().server_crt, "keyfile " + pki().server_key,
                    "use_identity_as_username true"],
                   "use_identity_as_username needs require_certificate true or psk_hint", 1)
