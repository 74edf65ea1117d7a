"""MQTT over WebSockets (issue 9, MQTT 5.0 chapter 6): ws:// and wss://.

Clients: paho with transport="websockets" (QoS 0/1/2, large messages,
TLS), a raw WebSocket client written here (packets split across frames,
several packets in one frame, text frames, bad Upgrade requests), and
MQTT.js in Node when it is installed (scripts/setup.sh puts it in
build/node_modules).
"""

import base64
import os
import shutil
import socket
import ssl
import struct
import subprocess
import time

from midgetest import (Broker, BrokerTest, PahoClient, connect_packet, free_port, packet,
                       publish_packet, subscribe_packet, wait_until, HOST, TIMEOUT, QUIET,
                       CONNACK, PINGREQ, PINGRESP, PUBLISH, SUBACK, Closed, RawClient)
from tlspki import PKI
import test_tls


def ws_paho(port, client_id="", version=4, tls=False, path="/mqtt", **kw):
    c = PahoClient(port, client_id, version, **kw)
    # PahoClient built a TCP client; rebuild it for WebSockets with the same callbacks.
    mqtt = __import__("paho.mqtt.client", fromlist=["Client"])
    old = c.c
    if version == 5:
        c.c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5, transport="websockets")
    else:
        c.c = mqtt.Client(client_id=client_id, clean_session=c.clean,
                          protocol={3: mqtt.MQTTv31, 4: mqtt.MQTTv311}[version],
                          transport="websockets")
    for cb in ("on_connect", "on_message", "on_subscribe", "on_disconnect"):
        setattr(c.c, cb, getattr(old, cb))
    c.c.ws_set_options(path=path)
    c.c.reconnect_delay_set(60, 120)
    if tls:
        c.c.tls_set(ca_certs=test_tls.pki().ca)
    return c


UPGRADE = ("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
           "Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Protocol: {proto}\r\n{extra}\r\n")


class RawWS:
    """A hand-driven WebSocket client: the handshake, masked frames out, frames in."""

    def __init__(self, port, tls=False):
        s = socket.create_connection((HOST, port), timeout=TIMEOUT)
        if tls:
            ctx = ssl.create_default_context(cafile=test_tls.pki().ca)
            s = ctx.wrap_socket(s, server_hostname="localhost")
        self.sock = s
        self.buf = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def http(self, request):
        """Sends request; returns (status line, headers dict, raw head) of the answer."""
        self.send_raw(request.encode() if isinstance(request, str) else request)
        while b"\r\n\r\n" not in self.buf:
            d = self.sock.recv(4096)
            if not d:
                break
            self.buf += d
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        hdrs = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        return lines[0], hdrs, head

    def upgrade(self, path="/mqtt", proto="mqtt", version="13", extra=""):
        key = base64.b64encode(os.urandom(16)).decode()
        status, hdrs, _ = self.http(UPGRADE.format(path=path, key=key, version=version,
                                                   proto=proto, extra=extra))
        return status, hdrs, key

    def frame(self, payload, opcode=2, fin=True):
        mask = os.urandom(4)
        b0 = (0x80 if fin else 0) | opcode
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", b0, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", b0, 0x80 | 127, n)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return head + mask + body

    def send_frame(self, payload, opcode=2, fin=True):
        self.send_raw(self.frame(payload, opcode, fin))

    def read_frame(self, timeout=TIMEOUT):
        """(opcode, payload) of the next frame, or None when the connection closed."""
        self.sock.settimeout(timeout)

        def need(n):
            while len(self.buf) < n:
                d = self.sock.recv(65536)
                if not d:
                    raise Closed()
                self.buf += d
        try:
            need(2)
            op = self.buf[0] & 0x0F
            n = self.buf[1] & 0x7F
            pos = 2
            if n == 126:
                need(4)
                n = struct.unpack("!H", self.buf[2:4])[0]
                pos = 4
            elif n == 127:
                need(10)
                n = struct.unpack("!Q", self.buf[2:10])[0]
                pos = 10
            need(pos + n)
            data = self.buf[pos:pos + n]
            self.buf = self.buf[pos + n:]
            return op, data
        except (Closed, ConnectionResetError):
            return None

    def mqtt_stream(self, want, timeout=TIMEOUT):
        """Reads binary frames until `want` bytes of MQTT stream arrived; returns them."""
        out = b""
        end = time.monotonic() + timeout
        while len(out) < want:
            f = self.read_frame(max(0.05, end - time.monotonic()))
            assert f is not None, "closed after %d of %d bytes" % (len(out), want)
            if f[0] in (0, 2):
                out += f[1]
        return out

    def expect_closed(self, timeout=TIMEOUT):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            f = self.read_frame(max(0.05, end - time.monotonic()))
            if f is None:
                return True
        raise AssertionError("websocket still open after %.1fs" % timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class WSCase(BrokerTest):
    """A broker with a plain MQTT listener (self.port), ws:// (self.ws_port), wss:// (self.wss_port)."""
    WS_EXTRA = ()

    def setUp(self):
        p = test_tls.pki()
        self._clients = []
        self.ws_port = free_port()
        self.wss_port = free_port()
        lines = ["connect_timeout 1", "listener %d %s" % (self.ws_port, HOST),
                 "protocol websockets"]
        lines += list(self.WS_EXTRA)
        lines += ["listener %d %s" % (self.wss_port, HOST), "protocol websockets",
                  "certfile " + p.server_crt, "keyfile " + p.server_key]
        self.broker = Broker(lines).start()
        self.port = self.broker.port
        self.log_mark = len(self.broker.log_text())

    def wpaho(self, client_id="", tls=False, connect=True, **kw):
        c = ws_paho(self.wss_port if tls else self.ws_port, client_id, tls=tls, **kw)
        self._clients.append(c)
        if connect:
            c.connect()
        return c

    def raw_ws(self, tls=False):
        c = RawWS(self.wss_port if tls else self.ws_port, tls)
        self._clients.append(c)
        return c

    def closed_log(self, needle, timeout=TIMEOUT):
        def find():
            for l in self.broker.log_text()[self.log_mark:].splitlines():
                if ("connection closed" in l or "client disconnected" in l) and needle in l:
                    return l
            return None
        return wait_until(find, timeout, what="close log line with %r" % needle)


class TestWebSockets(WSCase):

    def qos_roundtrip(self, tls):
        sub = self.wpaho("wsub", tls=tls)
        sub.subscribe("ws/#", 2)
        tcp = self.paho("tcp-sub")
        tcp.subscribe("ws/#", 2)
        pub = self.wpaho("wpub", tls=tls)
        for q in (0, 1, 2):
            pub.publish("ws/q%d" % q, b"qos %d" % q, qos=q)
        for c in (sub, tcp):
            got = sorted((m.topic, m.payload, m.qos) for m in c.get_n(3))
            self.assertEqual(got, [("ws/q0", b"qos 0", 0), ("ws/q1", b"qos 1", 1),
                                   ("ws/q2", b"qos 2", 2)])

    def test_qos012_ws(self):
        """ws://: QoS 0, 1 and 2 between WebSocket and TCP clients."""
        self.qos_roundtrip(False)

    def test_qos012_wss(self):
        """wss://: the same over TLS."""
        self.qos_roundtrip(True)

    def test_large_message_across_frames(self):
        """A 1 MB message: many frames each way, delivered intact to WS and TCP subscribers."""
        payload = os.urandom(1024 * 1024)
        sub = self.wpaho("big-sub")
        sub.subscribe("big", 1)
        tcp = self.paho("big-tcp")
        tcp.subscribe("big", 1)
        self.wpaho("big-pub", tls=True).publish("big", payload, qos=1, timeout=10)
        self.assertEqual(sub.get(10).payload, payload)
        self.assertEqual(tcp.get(10).payload, payload)

    def test_packets_span_frames_and_frames_hold_packets(self):
        """[MQTT-6.0.0-2]: the MQTT stream may be cut anywhere between frames."""
        ws = self.raw_ws()
        status, hdrs, _ = ws.upgrade()
        self.assertIn("101", status)
        self.assertEqual(hdrs.get("sec-websocket-protocol"), "mqtt")
        conn = connect_packet("split-client")
        # CONNECT cut in three frames, one of them a continuation of a fragmented message.
        ws.send_frame(conn[:3], opcode=2, fin=False)
        ws.send_frame(conn[3:7], opcode=0, fin=False)
        ws.send_frame(conn[7:], opcode=0, fin=True)
        self.assertEqual(ws.mqtt_stream(4)[0] >> 4, CONNACK)
        # SUBSCRIBE, PUBLISH and PINGREQ in one frame.
        both = (subscribe_packet(1, [("s/t", 0)]) + publish_packet("s/t", b"in one frame") +
                packet(PINGREQ, 0, b""))
        ws.send_frame(both)
        expect = len(packet(SUBACK, 0, b"\x00\x01\x00")) + \
            len(publish_packet("s/t", b"in one frame")) + 2
        stream = ws.mqtt_stream(expect)
        self.assertEqual(stream[0] >> 4, SUBACK)
        self.assertIn(b"in one frame", stream)
        self.assertEqual(stream[-2] >> 4, PINGRESP)

    def test_subprotocol_mqttv31(self):
        """[MQTT-6.0.0-4]: "mqttv3.1" is accepted for MQTT 3.1 clients and echoed."""
        ws = self.raw_ws()
        status, hdrs, _ = ws.upgrade(proto="mqttv3.1")
        self.assertIn("101", status)
        self.assertEqual(hdrs.get("sec-websocket-protocol"), "mqttv3.1")
        ws.send_frame(connect_packet("v31", version=3))
        self.assertEqual(ws.mqtt_stream(4)[:4], b"\x20\x02\x00\x00")

    def test_accept_key(self):
        """RFC 6455 4.2.2: Sec-WebSocket-Accept = base64(SHA-1(key + GUID))."""
        import hashlib
        ws = self.raw_ws()
        status, hdrs, key = ws.upgrade()
        want = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.assertEqual(hdrs.get("sec-websocket-accept"), want)

    def test_text_frame_closes(self):
        """[MQTT-6.0.0-1]: a text frame closes the connection."""
        ws = self.raw_ws()
        ws.upgrade()
        ws.send_frame(connect_packet("texty"), opcode=1)
        ws.expect_closed()
        self.closed_log("text frame")

    def test_ping_and_close_frames(self):
        """Control frames: a ping gets a pong; a close frame ends the session cleanly."""
        ws = self.raw_ws()
        ws.upgrade()
        ws.send_frame(connect_packet("pinger"))
        ws.mqtt_stream(4)
        ws.send_frame(b"hello", opcode=9)
        f = ws.read_frame()
        self.assertEqual(f, (10, b"hello"))
        ws.send_frame(struct.pack("!H", 1000), opcode=8)
        f = ws.read_frame()
        self.assertEqual(f[0], 8)
        ws.expect_closed()

    def bad_upgrade(self, request, needle, status="400"):
        steady = self.wpaho("steady")
        steady.subscribe("steady", 0)
        ws = self.raw_ws()
        line, hdrs, _ = ws.http(request)
        self.assertIn(status, line)
        ws.expect_closed()
        self.closed_log(needle)
        steady.publish("steady", b"ok", qos=1)
        self.assertEqual(steady.get().payload, b"ok")
        return hdrs

    def test_bad_upgrade_missing_key(self):
        self.bad_upgrade("GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                         "Sec-WebSocket-Protocol: mqtt\r\n\r\n", "Sec-WebSocket-Key")

    def test_bad_upgrade_wrong_version(self):
        hdrs = self.bad_upgrade(UPGRADE.format(path="/mqtt", key="dGhlIHNhbXBsZSBub25jZQ==",
                                               version="8", proto="mqtt", extra=""),
                                "Sec-WebSocket-Version")
        self.assertEqual(hdrs.get("sec-websocket-version"), "13")

    def test_bad_upgrade_oversize_headers(self):
        big = "X-Filler: %s\r\n" % ("a" * 9000)
        self.bad_upgrade(UPGRADE.format(path="/mqtt", key="dGhlIHNhbXBsZSBub25jZQ==",
                                        version="13", proto="mqtt", extra=big),
                         "request headers too large")

    def test_bad_upgrade_not_http(self):
        """Raw MQTT on a WebSocket port is not an HTTP request: 400 and close."""
        self.bad_upgrade(connect_packet("raw") + b"\r\n\r\n", "websocket upgrade refused")

    def test_bad_upgrade_unknown_subprotocol(self):
        self.bad_upgrade(UPGRADE.format(path="/mqtt", key="dGhlIHNhbXBsZSBub25jZQ==",
                                        version="13", proto="chat", extra=""),
                         "no supported Sec-WebSocket-Protocol")

    def test_garbage_after_upgrade(self):
        """Random bytes where frames should be (ws and wss): closed, the broker and others unharmed."""
        steady = self.wpaho("steady-g")
        steady.subscribe("steady", 0)
        for tls in (False, True):
            for seed in range(5):
                ws = self.raw_ws(tls)
                status, _, _ = ws.upgrade()
                self.assertIn("101", status)
                junk = bytes((seed * 131 + i * 7919) % 256 for i in range(2000))
                try:
                    ws.send_raw(junk)
                except OSError:
                    pass
                ws.expect_closed()
                ws.close()
        steady.publish("steady", b"ok", qos=1)
        self.assertEqual(steady.get().payload, b"ok")
        self.assertTrue(self.broker.alive())

    def test_silent_client_times_out(self):
        """A WebSocket client that never sends its Upgrade is closed by connect_timeout."""
        ws = self.raw_ws()
        ws.expect_closed(timeout=5)
        self.closed_log("websocket upgrade timeout")


class TestAllowLists(WSCase):
    WS_EXTRA = ["websockets_path /mqtt /ws", "websockets_origin https://good.example"]

    def test_path_allow_list(self):
        ws = self.raw_ws()
        status, _, _ = ws.upgrade(path="/other")
        self.assertIn("404", status)
        self.closed_log("path not in websockets_path")
        ws = self.raw_ws()
        status, _, _ = ws.upgrade(path="/ws?x=1")
        self.assertIn("101", status)

    def test_origin_allow_list(self):
        ws = self.raw_ws()
        status, _, _ = ws.upgrade(extra="Origin: https://evil.example\r\n")
        self.assertIn("403", status)
        self.closed_log("origin not in websockets_origin")
        ws = self.raw_ws()
        status, _, _ = ws.upgrade(extra="Origin: https://good.example\r\n")
        self.assertIn("101", status)
        # A client without an Origin header (not a browser) is allowed.
        ws = self.raw_ws()
        status, _, _ = ws.upgrade()
        self.assertIn("101", status)


def _mqttjs_dir():
    """The node_modules directory holding MQTT.js (scripts/setup.sh installs it), or None."""
    here = os.path.dirname(os.path.abspath(__file__))
    cands = []
    if os.environ.get("MIDGE_BUILDDIR"):
        cands.append(os.path.join(os.environ["MIDGE_BUILDDIR"], "node", "node_modules"))
    cands.append(os.path.join(here, "..", "..", "build", "node", "node_modules"))
    for c in cands:
        if os.path.exists(os.path.join(c, "mqtt", "package.json")):
            return os.path.abspath(c)
    return None


class TestMQTTjs(WSCase):
    """MQTT.js (npm `mqtt`) in Node over ws:// and wss://."""

    def setUp(self):
        if shutil.which("node") is None:
            self.skipTest("node not found: install nodejs to run the MQTT.js interop test")
        self.modules = _mqttjs_dir()
        if self.modules is None:
            self.skipTest("MQTT.js not installed: run scripts/setup.sh (npm install into build/node)")
        super().setUp()

    def run_js(self, url, ca=None):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mqttjs_client.js")
        env = dict(os.environ, NODE_PATH=self.modules)
        argv = ["node", script, url] + ([ca] if ca else [])
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                           timeout=20)
        out = r.stdout.decode(errors="replace")
        self.assertEqual(r.returncode, 0, out)
        import json
        lines = out.splitlines()
        big_sha = [l.split()[1] for l in lines if l.startswith("big ")][0]
        msgs = {m["topic"]: m for m in (json.loads(l) for l in lines if l.startswith("{"))}
        self.assertEqual(sorted(msgs), ["js/big", "js/q0", "js/q1", "js/q2"])
        self.assertEqual([msgs["js/q%d" % q]["qos"] for q in range(3)], [0, 1, 2])
        self.assertEqual(msgs["js/big"]["len"], 256 * 1024)
        self.assertEqual(msgs["js/big"]["sha"], big_sha)

    def test_mqttjs_ws(self):
        self.run_js("ws://127.0.0.1:%d/mqtt" % self.ws_port)

    def test_mqttjs_wss(self):
        self.run_js("wss://localhost:%d/mqtt" % self.wss_port, test_tls.pki().ca)
