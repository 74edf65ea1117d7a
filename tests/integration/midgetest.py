"""midgetest: harness for midge's integration tests.

Starts a real broker (midge, or mosquitto with MIDGE_TEST_BROKER=mosquitto)
on a free loopback port with a temporary config, and drives it with real
clients: paho-mqtt (Debian's python3-paho-mqtt 1.6), mosquitto_pub/sub and a
raw-socket MQTT client that builds packets by hand (3.1, 3.1.1 and 5.0).

Run the whole suite:  /usr/bin/python3 midgetest.py [test_module ...]
Environment:
  MIDGE_BIN          broker binary (default: ../../build/server/midge, ./server/midge)
  MIDGE_TEST_BROKER  "midge" (default) or "mosquitto" (/usr/sbin/mosquitto)
  MIDGE_TEST_KEEP    keep the temp dirs (configs and broker logs)
  MIDGE_TEST_FILTER  only run tests whose id contains this substring
"""

import os
import queue
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BROKER_KIND = os.environ.get("MIDGE_TEST_BROKER", "midge")
IS_MOSQUITTO = BROKER_KIND == "mosquitto"
IS_MIDGE = not IS_MOSQUITTO
MOSQUITTO_BIN = os.environ.get("MOSQUITTO_BIN", "/usr/sbin/mosquitto")
PYTHON = "/usr/bin/python3"
HOST = "127.0.0.1"
TIMEOUT = 3.0          # default wait for something that should happen
QUIET = 0.5            # how long we watch for something that must NOT happen
PER_TEST_LIMIT = 40    # hard limit for one test (SIGALRM)

_tmp_root = None


def tmp_root():
    global _tmp_root
    if _tmp_root is None:
        _tmp_root = tempfile.mkdtemp(prefix="midge-it-")
    return _tmp_root


def midge_bin():
    b = os.environ.get("MIDGE_BIN")
    if b:
        return b
    src = os.environ.get("MIDGE_SRCDIR", os.path.join(HERE, "..", ".."))
    for c in (os.path.join(src, "build", "server", "midge"),
              os.path.join(".", "server", "midge")):
        if os.path.exists(c):
            return os.path.abspath(c)
    return os.path.join(src, "build", "server", "midge")


def broker_bin():
    return MOSQUITTO_BIN if IS_MOSQUITTO else midge_bin()


def only_midge(reason="midge-specific behaviour"):
    return unittest.skipIf(IS_MOSQUITTO, "midge only: " + reason)


def mosquitto_deviation(reason):
    """Mark a test whose spec behaviour mosquitto 2.0.11 does not follow."""
    return unittest.skipIf(IS_MOSQUITTO, "known mosquitto deviation: " + reason)


_handed_out = set()


def free_port():
    """A loopback port nobody listens on now, and never one this process handed out
    before (a test often asks for several before the broker binds any of them)."""
    while True:
        s = socket.socket()
        s.bind((HOST, 0))
        p = s.getsockname()[1]
        s.close()
        if p not in _handed_out:
            _handed_out.add(p)
            return p


def listening_addresses(pid):
    """(address, port) of every TCP socket the process listens on (/proc/net/tcp and tcp6)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    out = []
    for name, size in (("tcp", 4), ("tcp6", 16)):
        try:
            with open("/proc/%d/net/%s" % (pid, name)) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                continue
            addr_hex, port_hex = cols[1].split(":")
            raw = bytes.fromhex(addr_hex)
            # /proc prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            family = socket.AF_INET if size == 4 else socket.AF_INET6
            out.append((socket.inet_ntop(family, raw), int(port_hex, 16)))
    return out


def wait_until(pred, timeout=TIMEOUT, interval=0.02, what="condition"):
    """Poll pred() until it returns a truthy value; return it, or raise."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Broker process
# ---------------------------------------------------------------------------

_started = []


def _kill_leftovers():
    for b in _started:
        try:
            b.kill()
        except Exception:
            pass


import atexit
atexit.register(_kill_leftovers)

MIDGE_ONLY_WORDS = {"worker_threads", "connect_timeout", "listener_allow_anonymous"}


class Broker:
    """A broker process on a free loopback port.

    config: extra config lines (mosquitto words). The listener, anonymous
    access and worker_threads 2 are added unless given.
    """

    def __init__(self, config=(), workers=2, listener=True):
        self.extra = list(config)
        self.workers = workers
        self.listener = listener
        self.port = None
        self.proc = None
        self.stopped_by_sigterm = False
        self.dir = tempfile.mkdtemp(prefix="b-", dir=tmp_root())
        self.conf = os.path.join(self.dir, "broker.conf")
        self.logpath = os.path.join(self.dir, "broker.log")
        self.exit_code = None

    def config_lines(self):
        lines = []
        if self.listener:
            lines.append("listener %d %s" % (self.port, HOST))
        words = {l.split()[0] for l in self.extra if l.strip()}
        if "allow_anonymous" not in words:
            lines.append("allow_anonymous true")
        if self.workers and "worker_threads" not in words:
            lines.append("worker_threads %d" % self.workers)
        lines += self.extra
        if IS_MOSQUITTO:
            out = []
            for l in lines:
                w = l.split()[0] if l.split() else ""
                if w in MIDGE_ONLY_WORDS:
                    continue
                out.append(l)
            out += ["log_dest stderr", "log_type all", "persistence false"]
            lines = out
        return lines

    def write_config(self):
        with open(self.conf, "w") as f:
            f.write("\n".join(self.config_lines()) + "\n")

    def start(self, timeout=5.0):
        last = None
        for _attempt in range(3):
            self.port = free_port()
            self.write_config()
            self.log = open(self.logpath, "ab")
            argv = [broker_bin(), "-c", self.conf, "-v"]
            self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
            _started.append(self)
            try:
                self.wait_port(timeout)
                return self
            except AssertionError as e:
                last = e
                if self.proc.poll() is None:
                    self.kill()
                if "in use" not in self.log_text():
                    break
        raise AssertionError("broker did not start: %s\n--- broker log ---\n%s" % (last, self.log_text()[-3000:]))

    def wait_port(self, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError("broker exited with code %s" % self.proc.returncode)
            try:
                s = socket.create_connection((HOST, self.port), timeout=0.5)
                s.close()
                break
            except OSError:
                time.sleep(0.02)
        else:
            raise AssertionError("port %d not accepting after %.1fs" % (self.port, timeout))
        # The other listeners of the config (TLS, WebSockets, ...) may open a little later:
        # wait until the broker listens on them too, without connecting (a probe would show
        # up in logs as a failed handshake). One that never opens is left to the test.
        ports = {int(l.split()[1]) for l in self.config_lines()
                 if l.split()[:1] == ["listener"] and len(l.split()) > 1 and l.split()[1].isdigit()}
        ports.discard(0)
        while ports and time.monotonic() < end and self.proc.poll() is None:
            try:
                ports -= {p for _, p in listening_addresses(self.proc.pid)}
            except OSError:
                break
            if ports:
                time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after timeout. Returns the exit code."""
        if self.proc is None:
            return None
        self.stopped_by_sigterm = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
                self.stopped_by_sigterm = True
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.exit_code = self.proc.returncode
        try:
            self.log.close()
        except Exception:
            pass
        return self.exit_code

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, pred, timeout=TIMEOUT, what="log line"):
        """Wait for a log line for which pred(line) is true; return it."""
        def find():
            for line in self.log_text().splitlines():
                if pred(line):
                    return line
            return None
        return wait_until(find, timeout, what=what)


# ---------------------------------------------------------------------------
# Raw MQTT codec
# ---------------------------------------------------------------------------

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, \
    UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(1, 16)
PACKET_NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
                7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
                12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}

# property id -> (name, type)
PROPS = {
    0x01: ("payload_format", "byte"), 0x02: ("message_expiry", "u32"),
    0x03: ("content_type", "str"), 0x08: ("response_topic", "str"),
    0x09: ("correlation_data", "bin"), 0x0B: ("subscription_id", "varint"),
    0x11: ("session_expiry", "u32"), 0x12: ("assigned_client_id", "str"),
    0x13: ("server_keep_alive", "u16"), 0x15: ("auth_method", "str"),
    0x16: ("auth_data", "bin"), 0x17: ("request_problem_info", "byte"),
    0x18: ("will_delay", "u32"), 0x19: ("request_response_info", "byte"),
    0x1A: ("response_info", "str"), 0x1C: ("server_reference", "str"),
    0x1F: ("reason_string", "str"), 0x21: ("receive_maximum", "u16"),
    0x22: ("topic_alias_maximum", "u16"), 0x23: ("topic_alias", "u16"),
    0x24: ("maximum_qos", "byte"), 0x25: ("retain_available", "byte"),
    0x26: ("user_property", "pair"), 0x27: ("maximum_packet_size", "u32"),
    0x28: ("wildcard_sub_available", "byte"), 0x29: ("sub_id_available", "byte"),
    0x2A: ("shared_sub_available", "byte"),
}
PROP_IDS = {v[0]: (k, v[1]) for k, v in PROPS.items()}


class Malformed(Exception):
    pass


class Closed(Exception):
    """The peer closed the connection."""


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def dec_varint(buf, pos):
    mult, val = 1, 0
    for i in range(4):
        if pos >= len(buf):
            raise Malformed("truncated varint")
        b = buf[pos]
        pos += 1
        val += (b & 0x7F) * mult
        if not b & 0x80:
            return val, pos
        mult *= 128
    raise Malformed("varint over 4 bytes")


def bstr(s):
    if isinstance(s, str):
        s = s.encode("utf-8")
    return struct.pack("!H", len(s)) + s


def enc_props(props):
    """props: list of (name, value) (order kept, repeats allowed) or dict."""
    if props is None:
        props = []
    if isinstance(props, dict):
        props = list(props.items())
    out = bytearray()
    for name, val in props:
        pid, typ = PROP_IDS[name]
        out += varint(pid)
        if typ == "byte":
            out += bytes([val])
        elif typ == "u16":
            out += struct.pack("!H", val)
        elif typ == "u32":
            out += struct.pack("!I", val)
        elif typ == "varint":
            out += varint(val)
        elif typ in ("str", "bin"):
            out += bstr(val)
        elif typ == "pair":
            out += bstr(val[0]) + bstr(val[1])
    return varint(len(out)) + bytes(out)


def dec_props(buf, pos):
    n, pos = dec_varint(buf, pos)
    end = pos + n
    props = []
    while pos < end:
        pid, pos = dec_varint(buf, pos)
        if pid not in PROPS:
            raise Malformed("unknown property 0x%02x" % pid)
        name, typ = PROPS[pid]
        if typ == "byte":
            val = buf[pos]; pos += 1
        elif typ == "u16":
            val = struct.unpack_from("!H", buf, pos)[0]; pos += 2
        elif typ == "u32":
            val = struct.unpack_from("!I", buf, pos)[0]; pos += 4
        elif typ == "varint":
            val, pos = dec_varint(buf, pos)
        elif typ in ("str", "bin"):
            ln = struct.unpack_from("!H", buf, pos)[0]
            val = bytes(buf[pos + 2:pos + 2 + ln]); pos += 2 + ln
            if typ == "str":
                val = val.decode("utf-8", "replace")
        elif typ == "pair":
            ln = struct.unpack_from("!H", buf, pos)[0]
            k = bytes(buf[pos + 2:pos + 2 + ln]).decode("utf-8", "replace"); pos += 2 + ln
            ln = struct.unpack_from("!H", buf, pos)[0]
            v = bytes(buf[pos + 2:pos + 2 + ln]).decode("utf-8", "replace"); pos += 2 + ln
            val = (k, v)
        props.append((name, val))
    if pos != end:
        raise Malformed("property length mismatch")
    return props, end


def packet(ptype, flags, body):
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + bytes(body)


def connect_packet(client_id="", version=4, clean=True, keepalive=60, will=None,
                   username=None, password=None, props=None, proto_name=None):
    """will: dict(topic, payload, qos=0, retain=False, props=None)."""
    name = proto_name or ("MQIsdp" if version == 3 else "MQTT")
    flags = 0
    if clean:
        flags |= 0x02
    if will:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = bstr(name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        body += enc_props(props)
    body += bstr(client_id)
    if will:
        if version == 5:
            body += enc_props(will.get("props"))
        body += bstr(will["topic"]) + bstr(will.get("payload", b""))
    if username is not None:
        body += bstr(username)
    if password is not None:
        body += bstr(password)
    return packet(CONNECT, 0, body)


def publish_packet(topic, payload=b"", qos=0, retain=False, dup=False, pid=None,
                   props=None, version=4):
    if isinstance(payload, str):
        payload = payload.encode()
    flags = (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    body = bstr(topic)
    if qos:
        body += struct.pack("!H", pid)
    if version == 5:
        body += enc_props(props)
    body += payload
    return packet(PUBLISH, flags, body)


def ack_packet(ptype, pid, rc=None, props=None, version=4):
    flags = 2 if ptype == PUBREL else 0
    body = struct.pack("!H", pid)
    if version == 5 and (rc is not None or props):
        body += bytes([rc or 0])
        if props:
            body += enc_props(props)
    return packet(ptype, flags, body)


def subscribe_packet(pid, subs, props=None, version=4):
    """subs: list of (filter, options_byte)."""
    body = struct.pack("!H", pid)
    if version == 5:
        body += enc_props(props)
    for f, o in subs:
        body += bstr(f) + bytes([o])
    return packet(SUBSCRIBE, 2, body)


def sub_opts(qos=0, no_local=False, rap=False, rh=0):
    return qos | (4 if no_local else 0) | (8 if rap else 0) | (rh << 4)


def unsubscribe_packet(pid, filters, props=None, version=4):
    body = struct.pack("!H", pid)
    if version == 5:
        body += enc_props(props)
    for f in filters:
        body += bstr(f)
    return packet(UNSUBSCRIBE, 2, body)


def disconnect_packet(rc=None, props=None, version=4):
    body = b""
    if version == 5 and (rc is not None or props):
        body = bytes([rc or 0]) + (enc_props(props) if props else b"")
    return packet(DISCONNECT, 0, body)


def auth_packet(rc=0x18, props=None):
    return packet(AUTH, 0, bytes([rc]) + enc_props(props))


class Packet:
    def __init__(self, ptype, flags, body, version):
        self.type = ptype
        self.flags = flags
        self.body = bytes(body)
        self.props = []
        self.rc = 0
        self.pid = None
        b = self.body
        v5 = version == 5
        if ptype == CONNACK:
            self.session_present = bool(b[0] & 1)
            self.rc = b[1]
            if v5 and len(b) > 2:
                self.props, _ = dec_props(b, 2)
        elif ptype == PUBLISH:
            self.qos = (flags >> 1) & 3
            self.dup = bool(flags & 8)
            self.retain = bool(flags & 1)
            tl = struct.unpack_from("!H", b, 0)[0]
            self.topic = b[2:2 + tl].decode("utf-8", "replace")
            pos = 2 + tl
            if self.qos:
                self.pid = struct.unpack_from("!H", b, pos)[0]
                pos += 2
            if v5:
                self.props, pos = dec_props(b, pos)
            self.payload = b[pos:]
        elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            self.pid = struct.unpack_from("!H", b, 0)[0]
            if v5 and len(b) > 2:
                self.rc = b[2]
                if len(b) > 3:
                    self.props, _ = dec_props(b, 3)
        elif ptype in (SUBACK, UNSUBACK):
            self.pid = struct.unpack_from("!H", b, 0)[0]
            pos = 2
            if v5:
                self.props, pos = dec_props(b, pos)
            self.codes = list(b[pos:])
        elif ptype in (DISCONNECT, AUTH):
            if len(b) >= 1:
                self.rc = b[0]
            if v5 and len(b) > 1:
                self.props, _ = dec_props(b, 1)

    @property
    def name(self):
        return PACKET_NAMES.get(self.type, "?%d" % self.type)

    def prop(self, name, default=None):
        for n, v in self.props:
            if n == name:
                return v
        return default

    def props_all(self, name):
        return [v for n, v in self.props if n == name]

    def __repr__(self):
        extra = ""
        if self.type == PUBLISH:
            extra = " topic=%r qos=%d dup=%d retain=%d pid=%s payload=%r" % (
                self.topic, self.qos, self.dup, self.retain, self.pid, self.payload[:40])
        elif self.pid is not None:
            extra = " pid=%d" % self.pid
        if self.type in (CONNACK, DISCONNECT, PUBACK, PUBREC, PUBREL, PUBCOMP, AUTH):
            extra += " rc=0x%02x" % self.rc
        if self.type in (SUBACK, UNSUBACK):
            extra += " codes=%s" % [hex(c) for c in self.codes]
        if self.props:
            extra += " props=%r" % (self.props,)
        return "<%s%s>" % (self.name, extra)


class RawClient:
    """A hand-driven MQTT client over a plain socket.

    Every received packet goes to self.pending; the wait/expect helpers take
    from there. With auto_ack, PUBREL from the broker is answered with PUBCOMP
    as soon as it is read (QoS 1/2 publishes are acked by recv_publish).
    """

    def __init__(self, port, version=4, host=HOST, timeout=TIMEOUT):
        self.version = version
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pending = []
        self.closed = False
        self.next_pid = 1
        self.auto_pubcomp = True

    # -- sending
    def send(self, data):
        self.sock.sendall(data)

    def pid(self):
        p = self.next_pid
        self.next_pid = self.next_pid % 65535 + 1
        return p

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    # -- receiving
    def _read_more(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        r, _, _ = select.select([self.sock], [], [], remaining)
        if not r:
            return False
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            raise Closed()
        self.buf += data
        return True

    def _parse_one(self):
        if len(self.buf) < 2:
            return None
        try:
            rl, pos = dec_varint(self.buf, 1)
        except Malformed as e:
            if len(self.buf) >= 5:
                raise
            return None
        if len(self.buf) < pos + rl:
            return None
        b0 = self.buf[0]
        body = self.buf[pos:pos + rl]
        del self.buf[:pos + rl]
        p = Packet(b0 >> 4, b0 & 0x0F, body, self.version)
        if p.type == PUBREL and self.auto_pubcomp:
            self.send(ack_packet(PUBCOMP, p.pid, version=self.version))
        return p

    def read_packet(self, timeout=TIMEOUT):
        """Read one packet from the socket (not from pending). None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            p = self._parse_one()
            if p is not None:
                return p
            if not self._read_more(deadline):
                return None

    def wait_for(self, pred, timeout=TIMEOUT, what="packet"):
        """Return (and remove) the first packet, pending or new, for which pred is true."""
        for i, p in enumerate(self.pending):
            if pred(p):
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            try:
                p = self.read_packet(max(0.0, deadline - time.monotonic()))
            except Closed:
                raise AssertionError("connection closed while waiting for %s (pending: %r)" % (what, self.pending))
            if p is None:
                raise AssertionError("timed out after %.1fs waiting for %s (pending: %r)" % (timeout, what, self.pending))
            if pred(p):
                return p
            self.pending.append(p)

    def expect(self, ptype, timeout=TIMEOUT, pid=None):
        return self.wait_for(lambda p: p.type == ptype and (pid is None or p.pid == pid),
                             timeout, what=PACKET_NAMES[ptype] + ("" if pid is None else " pid=%d" % pid))

    def recv_publish(self, timeout=TIMEOUT, ack=True, topic=None):
        p = self.wait_for(lambda p: p.type == PUBLISH and (topic is None or p.topic == topic),
                          timeout, what="PUBLISH" + (" on %r" % topic if topic else ""))
        if ack:
            self.ack(p)
        return p

    def ack(self, p):
        if p.qos == 1:
            self.send(ack_packet(PUBACK, p.pid, version=self.version))
        elif p.qos == 2:
            self.send(ack_packet(PUBREC, p.pid, version=self.version))

    def recv_publishes(self, n, timeout=TIMEOUT, ack=True):
        end = time.monotonic() + timeout
        return [self.recv_publish(max(0.05, end - time.monotonic()), ack) for _ in range(n)]

    def no_publish(self, timeout=QUIET, topic=None):
        """Assert that no PUBLISH (on topic) arrives within timeout; returns nothing."""
        try:
            p = self.wait_for(lambda p: p.type == PUBLISH and (topic is None or p.topic == topic),
                              timeout, what="PUBLISH")
        except AssertionError:
            return
        raise AssertionError("unexpected %r" % p)

    def expect_closed(self, timeout=TIMEOUT):
        """Wait until the broker closes the connection. Returns the packets read before."""
        got = list(self.pending)
        self.pending = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                p = self.read_packet(max(0.0, deadline - time.monotonic()))
            except Closed:
                return got
            except (Malformed, struct.error):
                continue
            if p is None:
                raise AssertionError("connection still open after %.1fs (got %r)" % (timeout, got))
            got.append(p)

    def expect_disconnect(self, rc=None, timeout=TIMEOUT, allow_plain_close=False):
        """Broker must close; for v5 it must first send DISCONNECT with rc (if rc given)."""
        got = self.expect_closed(timeout)
        discs = [p for p in got if p.type == DISCONNECT]
        if self.version == 5 and rc is not None and not allow_plain_close:
            assert discs, "expected DISCONNECT 0x%02x before close, got %r" % (rc, got)
        if discs and rc is not None:
            assert discs[-1].rc == rc, "expected DISCONNECT 0x%02x, got %r" % (rc, discs[-1])
        return got

    def is_open(self, timeout=0.2):
        """True if the connection is still open (answers a PINGREQ)."""
        try:
            self.send(packet(PINGREQ, 0, b""))
            self.expect(PINGRESP, timeout)
            return True
        except (AssertionError, OSError):
            return False

    # -- high level
    def connect(self, client_id="", clean=True, keepalive=60, will=None, props=None,
                username=None, password=None, expect_rc=0, timeout=TIMEOUT):
        self.send(connect_packet(client_id, self.version, clean, keepalive, will,
                                 username, password, props))
        ca = self.expect(CONNACK, timeout)
        if expect_rc is not None:
            assert ca.rc == expect_rc, "CONNACK rc 0x%02x, expected 0x%02x (%r)" % (ca.rc, expect_rc, ca)
        self.connack = ca
        return ca

    def subscribe(self, filt, qos=0, opts=None, sub_id=None, props=None, expect_codes=None):
        pid = self.pid()
        subs = filt if isinstance(filt, list) else [(filt, qos if opts is None else opts)]
        pr = list(props or [])
        if sub_id is not None:
            pr.append(("subscription_id", sub_id))
        self.send(subscribe_packet(pid, subs, pr, self.version))
        sa = self.expect(SUBACK, pid=pid)
        if expect_codes is not None:
            assert sa.codes == expect_codes, "SUBACK %r, expected %r" % (sa, expect_codes)
        return sa

    def unsubscribe(self, filters):
        pid = self.pid()
        filters = filters if isinstance(filters, list) else [filters]
        self.send(unsubscribe_packet(pid, filters, version=self.version))
        return self.expect(UNSUBACK, pid=pid)

    def publish(self, topic, payload=b"", qos=0, retain=False, props=None, pid=None, dup=False,
                wait_ack=True):
        """Publish; for QoS 1/2 run the whole flow and return the last ack packet."""
        if qos and pid is None:
            pid = self.pid()
        self.send(publish_packet(topic, payload, qos, retain, dup, pid, props, self.version))
        if not qos or not wait_ack:
            return pid
        if qos == 1:
            return self.expect(PUBACK, pid=pid)
        rec = self.expect(PUBREC, pid=pid)
        if rec.rc >= 0x80:
            return rec
        self.send(ack_packet(PUBREL, pid, version=self.version))
        return self.expect(PUBCOMP, pid=pid)

    def disconnect(self, rc=None, props=None, wait=True):
        """Sends DISCONNECT and closes. wait: first until the broker closes its side, so
        whatever the test does next (on other connections) sees the broker after the
        DISCONNECT: packets of two connections are otherwise handled in any order."""
        try:
            self.send(disconnect_packet(rc, props, self.version))
            if wait:
                self.sock.shutdown(socket.SHUT_WR)
                self.expect_closed()
        except (OSError, AssertionError):
            pass
        self.close()


# ---------------------------------------------------------------------------
# paho helpers
# ---------------------------------------------------------------------------

def paho():
    import paho.mqtt.client as mqtt
    return mqtt


class PahoClient:
    """paho client with a message queue and synchronous connect/subscribe."""

    def __init__(self, port, client_id="", version=4, clean=True, keepalive=60,
                 will=None, props=None, userdata=None):
        mqtt = paho()
        proto = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}[version]
        self.version = version
        if version == 5:
            self.c = mqtt.Client(client_id=client_id, protocol=proto)
        else:
            self.c = mqtt.Client(client_id=client_id, clean_session=clean, protocol=proto)
        self.port = port
        self.clean = clean
        self.keepalive = keepalive
        self.connect_props = props
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.subacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_subscribe = lambda c, u, mid, granted, *a: self.subacks.put((mid, granted))
        self.c.on_disconnect = lambda c, u, rc, *a: self.disconnects.put(rc)
        if will:
            self.c.will_set(will["topic"], will.get("payload"), will.get("qos", 0),
                            will.get("retain", False), will.get("props"))
        self.c.reconnect_delay_set(60, 120)  # never reconnect behind our back

    def _on_connect(self, c, u, flags, rc, props=None):
        self.connacks.put((flags, rc, props))

    def connect(self, timeout=TIMEOUT):
        kw = {}
        if self.version == 5:
            kw["clean_start"] = self.clean
            if self.connect_props is not None:
                kw["properties"] = self.connect_props
        self.c.connect(HOST, self.port, self.keepalive, **kw)
        self.c.loop_start()
        try:
            flags, rc, props = self.connacks.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no CONNACK within %.1fs" % timeout)
        self.flags, self.rc, self.connack_props = flags, rc, props
        return flags, rc, props

    def subscribe(self, topic, qos=0, options=None, props=None, timeout=TIMEOUT):
        if options is not None:
            rc, mid = self.c.subscribe(topic, options=options, properties=props)
        else:
            rc, mid = self.c.subscribe(topic, qos, properties=props) if self.version == 5 \
                else self.c.subscribe(topic, qos)
        assert rc == 0, "subscribe failed locally: %s" % rc
        try:
            got_mid, granted = self.subacks.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no SUBACK within %.1fs" % timeout)
        return granted

    def publish(self, topic, payload, qos=0, retain=False, props=None, timeout=TIMEOUT):
        info = self.c.publish(topic, payload, qos, retain, properties=props) if self.version == 5 \
            else self.c.publish(topic, payload, qos, retain)
        if qos:
            info.wait_for_publish(timeout)
            assert info.is_published(), "publish not acknowledged within %.1fs" % timeout
        return info

    def get(self, timeout=TIMEOUT, what="message"):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no %s within %.1fs" % (what, timeout))

    def get_n(self, n, timeout=TIMEOUT):
        end = time.monotonic() + timeout
        return [self.get(max(0.05, end - time.monotonic()), "message %d of %d" % (i + 1, n))
                for i in range(n)]

    def none(self, timeout=QUIET):
        try:
            m = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError("unexpected message on %r: %r" % (m.topic, m.payload))

    def disconnect(self):
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()

    def drop(self):
        """Close the socket without DISCONNECT (as a crash would)."""
        self.c.loop_stop()
        try:
            self.c.socket().close()
        except Exception:
            pass


def paho_props(packet_type, **kw):
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    p = Properties(getattr(PacketTypes, packet_type))
    for k, v in kw.items():
        setattr(p, k, v)
    return p


# ---------------------------------------------------------------------------
# Test base class
# ---------------------------------------------------------------------------

class BrokerTest(unittest.TestCase):
    """Each test gets its own broker with CONFIG (extra lines) and WORKERS threads."""
    CONFIG = []
    WORKERS = 2

    def setUp(self):
        self._clients = []
        self.broker = Broker(self.CONFIG, self.WORKERS).start()
        self.port = self.broker.port

    def tearDown(self):
        for c in self._clients:
            try:
                if isinstance(c, PahoClient):
                    c.c.disconnect()
                    c.c.loop_stop()
                elif isinstance(c, subprocess.Popen):
                    if c.poll() is None:
                        c.kill()
                    c.wait()
                else:
                    c.close()
            except Exception:
                pass
        code = self.broker.stop()
        self._broker_log = self.broker.log_text()
        # Sanitizer builds (scripts/check.sh asan|tsan) report into the broker's
        # log; any report fails the test that produced it.
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                       "WARNING: ThreadSanitizer", "runtime error:"):
            if marker in self._broker_log:
                self.fail("sanitizer report in broker log:\n" + self._broker_log[-6000:])
        if self.broker.stopped_by_sigterm and code not in (0, None):
            self.fail("broker exited with code %s after SIGTERM" % code)

    def raw(self, version=4, connect=True, client_id=None, **kw):
        c = RawClient(self.port, version)
        self._clients.append(c)
        if connect:
            if client_id is None:
                client_id = "raw-%d" % id(c)
            c.connect(client_id, **kw)
        return c

    def paho(self, client_id="", version=4, connect=True, **kw):
        c = PahoClient(self.port, client_id, version, **kw)
        self._clients.append(c)
        if connect:
            c.connect()
        return c

    def sys_values(self, w, wanted, timeout=6.0):
        """Reads $SYS publishes on w until every topic in `wanted` has its value (a string, or a
        predicate on the string). Returns the last values seen.
        $SYS topics are retained: the first value is a snapshot, so wait for the one wanted."""
        seen = {}

        def ok():
            for t, v in wanted.items():
                if t not in seen:
                    return False
                if callable(v) and not v(seen[t]):
                    return False
                if not callable(v) and seen[t] != v:
                    return False
            return True
        end = time.monotonic() + timeout
        while not ok():
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("$SYS values %r, wanted %r" % (seen, wanted))
            try:
                p = w.recv_publish(timeout=left)
            except AssertionError:
                continue
            seen[p.topic] = p.payload.decode()
        return seen

    def track(self, proc):
        self._clients.append(proc)
        return proc

    def marker(self, pub, sub, topic):
        """Publish a marker on topic from pub and wait until sub sees it.

        Anything pub published earlier on the same topic must have arrived before.
        Returns the publishes sub received before the marker."""
        tag = ("marker-%f" % time.monotonic()).encode()
        pub.publish(topic, tag, qos=1)
        before = []
        while True:
            p = sub.recv_publish()
            if p.payload == tag:
                return before
            before.append(p)


# ---------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------

class _Alarm(Exception):
    pass


def _alarm(signum, frame):
    raise _Alarm("test exceeded %d s" % PER_TEST_LIMIT)


class Result(unittest.TestResult):
    def __init__(self):
        super().__init__()
        self.passed = 0
        self.t0 = 0

    def startTest(self, test):
        super().startTest(test)
        self.t0 = time.monotonic()
        signal.alarm(PER_TEST_LIMIT)

    def stopTest(self, test):
        signal.alarm(0)
        super().stopTest(test)

    def _name(self, test):
        return test.id().replace("__main__.", "")

    def _el(self):
        return "%.2fs" % (time.monotonic() - self.t0)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1
        print("PASS %s (%s)" % (self._name(test), self._el()), flush=True)

    def _fail(self, kind, test, err):
        print("%s %s (%s)" % (kind, self._name(test), self._el()), flush=True)
        print("    " + "".join(traceback.format_exception(*err)).replace("\n", "\n    ").rstrip())
        log = getattr(test, "_broker_log", None)
        if log:
            tail = log.splitlines()[-25:]
            print("    --- broker log (last %d lines) ---" % len(tail))
            for l in tail:
                print("    | " + l)
        sys.stdout.flush()

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._fail("FAIL", test, err)

    def addError(self, test, err):
        super().addError(test, err)
        self._fail("ERROR", test, err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        print("SKIP %s: %s" % (self._name(test), reason), flush=True)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        print("XFAIL %s" % self._name(test), flush=True)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        print("UPASS %s" % self._name(test), flush=True)


def _filter(suite, sub):
    out = unittest.TestSuite()
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            out.addTests(_filter(t, sub))
        elif sub in t.id():
            out.addTest(t)
    return out


def main(argv):
    sys.path.insert(0, HERE)
    names = [a[:-3] if a.endswith(".py") else a for a in argv] or sorted(
        f[:-3] for f in os.listdir(HERE) if f.startswith("test_") and f.endswith(".py"))
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for n in names:
        suite.addTests(loader.loadTestsFromName(os.path.basename(n)))
    flt = os.environ.get("MIDGE_TEST_FILTER")
    if flt:
        suite = _filter(suite, flt)
    signal.signal(signal.SIGALRM, _alarm)
    print("# broker: %s (%s)" % (broker_bin(), BROKER_KIND), flush=True)
    res = Result()
    t0 = time.monotonic()
    suite.run(res)
    failed = len(res.failures) + len(res.errors) + len(res.unexpectedSuccesses)
    print("# %.1fs" % (time.monotonic() - t0))
    if _tmp_root and not os.environ.get("MIDGE_TEST_KEEP"):
        shutil.rmtree(_tmp_root, ignore_errors=True)
    line = "%d passed, %d failed" % (res.passed, failed)
    if res.skipped:
        line += ", %d skipped" % len(res.skipped)
    print(line, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    # run through the importable module so tests and runner share one copy
    sys.path.insert(0, HERE)
    import midgetest
    sys.exit(midgetest.main(sys.argv[1:]))
