"""Storms (issue 10): bounded floods of connections, subscriptions, retained messages, reloads and
clients that vanish, each checked for the broker surviving, serving others and cleaning up.

Sizes are the issue's (10,000 connections, 100,000 subscriptions, 100,000 retained topics) on a
normal build and scaled down on sanitizer builds (detected from the broker binary) or with
MIDGE_STORM_SCALE=0.1 and the like. The clients are raw sockets driven from one thread (selectors),
not a thread per client. Leaks show at exit: the sanitizer builds check them in the broker log.
"""

import json
import os
import random
import selectors
import signal
import socket
import struct
import threading
import time
import unittest

from midgetest import (BrokerTest, RawClient, connect_packet, dec_varint, disconnect_packet,
                       publish_packet, subscribe_packet, unsubscribe_packet, ack_packet, only_midge,
                       broker_bin, wait_until, HOST, PUBACK, SUBACK, UNSUBACK, IS_MIDGE)
from test_plugins import PluginTest, need_plugins, plug
from test_acl_json import BUILD, bundled


def _sanitized():
    try:
        with open(broker_bin(), "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"__asan_init" in data or b"__tsan_init" in data


def _scale():
    env = os.environ.get("MIDGE_STORM_SCALE")
    if env:
        return float(env)
    return 0.2 if IS_MIDGE and _sanitized() else 1.0


SCALE = _scale()


def scaled(n):
    return max(100, int(n * SCALE))


def rst_close(s):
    """Closes with a TCP RST (SO_LINGER 0): a vanished client, and no TIME_WAIT left behind."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def read_packets(buf):
    """Splits complete packets off the front of bytearray buf: [(type, flags, body)]."""
    out = []
    while len(buf) >= 2:
        try:
            rl, pos = dec_varint(buf, 1)
        except Exception:  # noqa: BLE001 - an incomplete length
            break
        if len(buf) < pos + rl:
            break
        out.append((buf[0] >> 4, buf[0] & 0x0F, bytes(buf[pos:pos + rl])))
        del buf[:pos + rl]
    return out


def publish_topic(flags, body):
    """Topic and packet id (None for QoS 0) of a v3.1.1 PUBLISH body."""
    tl = struct.unpack("!H", body[:2])[0]
    topic = body[2:2 + tl].decode()
    pid = struct.unpack("!H", body[2 + tl:4 + tl])[0] if (flags >> 1) & 3 else None
    return topic, pid


def sys_value(port, topic, pred, timeout):
    """Waits until the retained $SYS value on topic satisfies pred (sys_interval 1)."""
    c = RawClient(port, 4)
    c.connect("sys-watch-%d" % id(c))
    c.subscribe(topic, 0)
    end = time.monotonic() + timeout
    last = None
    try:
        while time.monotonic() < end:
            try:
                p = c.recv_publish(timeout=max(0.05, end - time.monotonic()))
            except AssertionError:
                break
            last = p.payload.decode()
            if pred(last):
                return last
        raise AssertionError("%s never satisfied the condition (last %r)" % (topic, last))
    finally:
        c.disconnect()


@only_midge("storm sizes and $SYS counters are midge's")
class Storms(BrokerTest):
    CONFIG = ["sys_interval 1", "max_connections 20000"]

    def setUp(self):
        super().setUp()
        self.t_start = time.monotonic()

    # -- 10,000 connections ----------------------------------------------------------------------

    def test_connect_disconnect_storm(self):
        """10,000 clients connect and leave, up to 200 at once, a quarter each way: DISCONNECT, RST
        after CONNACK, RST in the middle of CONNECT, and CONNECT with a will then RST (the will goes
        out [MQTT-3.1.2-8]). Every CONNECT gets CONNACK 0 first [MQTT-3.2.0-1]; afterwards no client is left
        connected, no session is left over (all clean), and a new client is served."""
        total = scaled(10000)
        watcher = self.raw(4, client_id="will-watch")
        watcher.subscribe("storm/will/#", 1)
        sel = selectors.DefaultSelector()
        started = 0
        done = 0
        acked = 0
        wills = 0
        conns = {}

        def start(i):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((HOST, self.port))
            st = {"i": i, "kind": i % 4, "buf": bytearray(), "sent": False}
            conns[s] = st
            sel.register(s, selectors.EVENT_WRITE, st)

        def finish(s, rst):
            nonlocal done
            sel.unregister(s)
            del conns[s]
            if rst:
                rst_close(s)
            else:
                s.close()
            done += 1

        deadline = time.monotonic() + 30
        while done < total:
            self.assertLess(time.monotonic(), deadline, "storm stuck: %d of %d done" % (done, total))
            while started < total and len(conns) < 200:
                start(started)
                started += 1
            for key, ev in sel.select(timeout=1.0):
                s, st = key.fileobj, key.data
                try:
                    if not st["sent"]:
                        will = {"topic": "storm/will/%d" % st["i"], "payload": b"w"} if st["kind"] == 3 else None
                        pkt = connect_packet("storm-%d" % st["i"], 4, True, 30, will)
                        if st["kind"] == 2:
                            s.send(pkt[:len(pkt) // 2])
                            finish(s, True)
                            continue
                        s.send(pkt)
                        st["sent"] = True
                        sel.modify(s, selectors.EVENT_READ, st)
                        continue
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    self.fail("client %d: %r" % (st["i"], e))
                if not data:
                    # The broker closed: after our DISCONNECT (kind 0), nothing else expected.
                    self.assertEqual(st["kind"], 0, "broker closed client %d unexpectedly" % st["i"])
                    finish(s, False)
                    continue
                st["buf"] += data
                for ptype, _flags, body in read_packets(st["buf"]):
                    self.assertEqual((ptype, body[1]), (2, 0), "client %d: %r" % (st["i"], body))
                    acked += 1
                    if st["kind"] == 0:
                        s.send(disconnect_packet(version=4))  # then wait for the broker to close
                    else:
                        if st["kind"] == 3:
                            wills += 1
                        finish(s, True)
                        break
        sel.close()
        self.assertEqual(acked, total - total // 4 - (1 if total % 4 > 2 else 0))
        got = set()
        while len(got) < wills:
            got.add(watcher.recv_publish(timeout=10).topic)
        self.assertEqual(len(got), wills)
        # Everyone is gone: connected drops back to our two clients (watcher and the $SYS reader),
        # and no session outlives its clean client.
        sys_value(self.port, "$SYS/broker/clients/connected", lambda v: int(v) <= 2, 10)
        sys_value(self.port, "$SYS/broker/clients/total", lambda v: int(v) <= 2, 10)
        self.assertTrue(self.raw(5).is_open())

    # -- 100,000 subscriptions -------------------------------------------------------------------

    def test_hundred_thousand_subscriptions_one_client(self):
        """One client subscribes to 100,000 filters (1,000 per SUBSCRIBE, pipelined): every filter is
        granted [MQTT-3.8.4-1] [MQTT-3.9.3-1], matching publishes arrive once, then UNSUBSCRIBE of all
        of them is acknowledged [MQTT-3.10.4-4] and nothing arrives any more; the broker's subscription
        count follows."""
        n = scaled(100000)
        per = 1000
        packets = (n + per - 1) // per
        sub = self.raw(4, client_id="many-subs")
        sub.sock.settimeout(30)

        def filt(i):
            # odd: one-level wildcard; even: exact. No two filters match the same topic.
            return "st/%d/+" % i if i % 2 else "st/%d/x" % i

        def sender(make):
            try:
                for k in range(packets):
                    sub.send(make(k))
            except OSError:
                pass

        t = threading.Thread(target=sender, args=(lambda k: subscribe_packet(
            k + 1, [(filt(i), 1) for i in range(k * per, min(n, (k + 1) * per))], version=4),))
        t.start()
        granted = 0
        for k in range(packets):
            sa = sub.expect(SUBACK, timeout=30, pid=k + 1)
            self.assertEqual(set(sa.codes), {1}, "SUBACK %d" % (k + 1))
            granted += len(sa.codes)
        t.join()
        self.assertEqual(granted, n)
        sys_value(self.port, "$SYS/broker/subscriptions/count", lambda v: int(v) >= n, 10)
        pub = self.raw(4, client_id="pub")
        probes = [0, 1, n // 2, n // 2 + 1, n - 2, n - 1]
        for i in probes:
            pub.publish("st/%d/x" % i, b"%d" % i, qos=1)
        got = sorted(int(p.payload) for p in sub.recv_publishes(len(probes), timeout=10))
        self.assertEqual(got, sorted(probes))
        sub.no_publish()
        # Unsubscribe the odd (wildcard) half first, then the even half: records leave the
        # session's table in an order unlike the one they came in.
        for half in (1, 0):
            t = threading.Thread(target=sender, args=(lambda k: unsubscribe_packet(
                k + 1, [filt(i) for i in range(k * per, min(n, (k + 1) * per)) if i % 2 == half],
                version=4),))
            t.start()
            for k in range(packets):
                sub.expect(UNSUBACK, timeout=30, pid=k + 1)
            t.join()
            for i in probes:
                pub.publish("st/%d/x" % i, b"%d" % i, qos=1)
            if half == 1:
                got = sorted(int(p.payload) for p in sub.recv_publishes(len([i for i in probes if i % 2 == 0]), timeout=10))
                self.assertEqual(got, sorted(i for i in probes if i % 2 == 0))
            sub.no_publish()
        sys_value(self.port, "$SYS/broker/subscriptions/count", lambda v: int(v) < 10, 10)

    # -- 100,000 retained topics and a '#' subscriber ----------------------------------------------

    def test_hundred_thousand_retained_and_hash_subscriber(self):
        """100,000 retained messages on distinct topics, then a '#' subscriber at QoS 1 (the session
        queue is large enough here): it gets every one exactly once with RETAIN set [MQTT-3.3.1-6]
        [MQTT-3.3.1-8], none on $SYS [MQTT-4.7.2-1]; clearing them all (empty retained payloads
        [MQTT-3.3.1-10]) leaves the store empty."""
        n = scaled(100000)
        self.broker.stop()
        self.broker = type(self.broker)(self.CONFIG + ["max_queued_messages %d" % (n + 1000)],
                                        self.WORKERS).start()
        self.port = self.broker.port
        pub = self.raw(4, client_id="retainer")
        pub.sock.settimeout(60)
        blob = b"".join(publish_packet("ret/%d/%d" % (i // 1000, i), b"%d" % i, 0, True, version=4)
                        for i in range(n))
        pub.send(blob)
        pub.publish("ret/end", b"end", qos=1, retain=True)  # handled after all of the above
        sys_value(self.port, "$SYS/broker/retained messages/count", lambda v: int(v) >= n + 1, 15)
        s = socket.create_connection((HOST, self.port), timeout=30)
        s.sendall(connect_packet("hash", 4, True, 60) + subscribe_packet(1, [("#", 1)], version=4))
        buf = bytearray()
        topics = set()
        suback = False
        end = time.monotonic() + 60
        while len(topics) < n + 1:
            self.assertLess(time.monotonic(), end, "only %d of %d retained messages" % (len(topics), n + 1))
            data = s.recv(1 << 20)
            self.assertTrue(data, "broker closed the '#' subscriber")
            buf += data
            acks = []
            for ptype, flags, body in read_packets(buf):
                if ptype == 9:
                    suback = True
                if ptype != 3:
                    continue
                self.assertTrue(flags & 1, "RETAIN not set")
                topic, pid = publish_topic(flags, body)
                self.assertFalse(topic.startswith("$"), topic)
                self.assertNotIn(topic, topics, "delivered twice")
                topics.add(topic)
                if pid is not None:
                    acks.append(ack_packet(PUBACK, pid, version=4))
            if acks:
                s.sendall(b"".join(acks))
        self.assertTrue(suback)
        rst_close(s)
        pub.send(b"".join(publish_packet("ret/%d/%d" % (i // 1000, i), b"", 0, True, version=4)
                          for i in range(n)))
        pub.publish("ret/end", b"", qos=1, retain=True)
        sys_value(self.port, "$SYS/broker/retained messages/count", lambda v: int(v) < 100, 15)

    # -- SIGHUP under load -----------------------------------------------------------------------

    def test_sighup_during_full_load(self):
        """SIGHUP every 50 ms while 4 publishers flood QoS 0 and a QoS 1 stream runs, with the acl-json
        plugin checking every PUBLISH and its rule file rewritten between reloads: the QoS 1 stream
        loses nothing and stays in order [MQTT-4.6.0-6], the rules of the last file apply (v5 PUBACK
        0x87 Not authorized, 3.4.2.1), the broker keeps serving."""
        acl = os.path.join(self.broker.dir, "acl.json")
        rules = [{"default": {"publish": "allow", "subscribe": "allow", "receive": "allow", "retain": "allow"},
                  "anonymous": {"rules": [{"topic": "blocked/#", "deny": ["publish"]}]}}]
        rules.append(json.loads(json.dumps(rules[0])))
        rules[1]["anonymous"]["rules"].append({"topic": "blocked2/#", "deny": ["publish"]})

        def write_rules(k):
            with open(acl + ".tmp", "w") as f:
                json.dump(rules[k % 2], f)
            os.rename(acl + ".tmp", acl)  # a reload reads either file whole

        write_rules(0)
        plugin = []
        if BUILD:
            plugin = ["plugin " + bundled("acl-json"), "plugin_opt_acl_file " + acl]
        self.broker.stop()
        self.broker = type(self.broker)(self.CONFIG + plugin, self.WORKERS).start()
        self.port = self.broker.port
        stop = threading.Event()
        errors = []

        def flood(k):
            try:
                c = RawClient(self.port, 4)
                c.connect("flood-%d" % k)
                blob = b"".join(publish_packet("load/%d/%d" % (k, i), b"x" * 100, 0, version=4)
                                for i in range(200))
                while not stop.is_set():
                    c.send(blob)
                c.disconnect()
            except Exception as e:  # noqa: BLE001
                errors.append("flood %d: %r" % (k, e))

        sink = self.raw(4, client_id="sink")
        sink.subscribe("load/#", 0)
        sink_stop = threading.Event()

        def drain():
            while not sink_stop.is_set():
                try:
                    if not sink.sock.recv(1 << 20):
                        return
                except socket.timeout:
                    pass
                except OSError:
                    return

        stream_sub = self.raw(4, client_id="stream-sub")
        stream_sub.subscribe("stream", 1)
        got = []

        def stream_read():
            try:
                while not sink_stop.is_set():
                    try:
                        got.append(int(stream_sub.recv_publish(timeout=0.5).payload))
                    except AssertionError:
                        pass
            except Exception as e:  # noqa: BLE001
                errors.append("stream subscriber: %r" % e)

        stream_pub = self.raw(4, client_id="stream-pub")
        threads = [threading.Thread(target=flood, args=(k,)) for k in range(4)]
        threads.append(threading.Thread(target=drain))
        threads.append(threading.Thread(target=stream_read))
        for t in threads:
            t.start()
        reloads = 0
        sent = 0
        try:
            end = time.monotonic() + 4
            next_hup = time.monotonic()
            while time.monotonic() < end:
                stream_pub.publish("stream", b"%d" % sent, qos=1)
                sent += 1
                if time.monotonic() >= next_hup:
                    write_rules(reloads + 1)
                    self.broker.proc.send_signal(signal.SIGHUP)  # every 50 ms
                    reloads += 1
                    next_hup += 0.05
        finally:
            stop.set()
            for t in threads[:4]:
                t.join(10)
        wait_until(lambda: len(got) >= sent, timeout=20, what="the QoS 1 stream (%d sent)" % sent)
        sink_stop.set()
        for t in threads[4:]:
            t.join(5)
        self.assertEqual(errors, [])
        self.assertEqual(got, list(range(sent)))
        self.assertGreater(reloads, 5)
        wait_until(lambda: self.broker.log_text().count("configuration reloaded") >= 1,
                   what="reload log lines")
        if BUILD:
            # The last file written is rules[reloads % 2]; one more reload makes sure it was read.
            n = self.broker.log_text().count("acl reloaded")
            self.broker.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: self.broker.log_text().count("acl reloaded") > n, what="the last reload")
            probe = self.raw(5)
            self.assertEqual(probe.publish("blocked/x", b"", qos=1).rc, 0x87)
            self.assertEqual(probe.publish("blocked2/x", b"", qos=1).rc, 0x87 if reloads % 2 else 0)
        self.assertTrue(self.raw(5).is_open())

    # -- clients vanishing -----------------------------------------------------------------------

    def test_clients_disappearing_mid_packet(self):
        """500 clients with wills each send part of a 20 kB PUBLISH and vanish (RST) or go silent
        (keep alive 2 s: closed after 3 s [MQTT-3.1.2-24]). Every will is published
        [MQTT-3.1.2-8], none of the partial publishes is delivered, and the broker serves others."""
        n = scaled(500)
        watcher = self.raw(4, client_id="watch")
        watcher.subscribe([("vanish/will/#", 1), ("vanish/data/#", 0)])
        silent = []
        for i in range(n):
            s = socket.create_connection((HOST, self.port), timeout=10)
            s.sendall(connect_packet("vanish-%d" % i, 4, True, 2,
                                     {"topic": "vanish/will/%d" % i, "payload": b"gone", "qos": 1}))
            buf = bytearray()
            while len(buf) < 4:
                data = s.recv(4 - len(buf))
                self.assertTrue(data, "client %d closed before CONNACK" % i)
                buf += data
            self.assertEqual(bytes(buf), b"\x20\x02\x00\x00", "client %d" % i)
            pkt = publish_packet("vanish/data/%d" % i, b"p" * 20000, 1, pid=1, version=4)
            cut = 1 + (i * 7919) % (len(pkt) - 2)
            s.sendall(pkt[:cut])
            if i % 2:
                rst_close(s)
            else:
                silent.append(s)
        got = set()
        end = time.monotonic() + 20
        while len(got) < n:
            self.assertLess(time.monotonic(), end, "only %d of %d wills" % (len(got), n))
            p = watcher.recv_publish(timeout=10)
            self.assertTrue(p.topic.startswith("vanish/will/"), "a partial PUBLISH was delivered: %r" % p)
            got.add(p.topic)
        for s in silent:
            s.settimeout(5)
            try:
                self.assertEqual(s.recv(1), b"", "silent client not closed")
            except ConnectionResetError:
                pass
            s.close()
        watcher.no_publish()
        self.assertTrue(self.raw(5).is_open())

    def test_half_open_tcp_caught_by_keepalive(self):
        """A client behind a path that silently stops carrying packets in both directions (half-open
        TCP: no FIN, no RST ever arrives), subscribed to a QoS 0 flood: the broker keeps serving the
        others, closes the dead connection once 1.5 x keep alive passed without a packet
        [MQTT-3.1.2-24] and publishes its will [MQTT-3.1.2-8]."""
        proxy = BlackholeProxy(self.port)
        try:
            c = RawClient(proxy.port, 4)
            c.connect("half-open", keepalive=2, will={"topic": "half/will", "payload": b"dead", "qos": 1})
            c.subscribe("flood/#", 0)
            watcher = self.raw(4, client_id="half-watch")
            watcher.subscribe("half/will", 1)
            proxy.freeze()
            t_frozen = time.monotonic()
            pub = self.raw(4, client_id="flooder")
            blob = b"".join(publish_packet("flood/x", b"f" * 1000, 0, version=4) for _ in range(1000))
            for _ in range(5):
                pub.send(blob)  # 5 MB toward a client that reads nothing
            self.assertEqual(pub.publish("flood/done", b"", qos=1).rc, 0)  # the broker still serves us
            p = watcher.recv_publish(timeout=10)
            self.assertEqual((p.topic, p.payload), ("half/will", b"dead"))
            waited = time.monotonic() - t_frozen
            self.assertGreaterEqual(waited, 2.0, "closed before the keep alive ran out")
            wait_until(proxy.upstream_closed, timeout=5, what="the broker to close its side")
            c.close()
        finally:
            proxy.close()


@only_midge("midge plugin ABI")
@need_plugins
class SessionSubscriptionTable(PluginTest):
    """The session's own record of its filters (indexed once it has 16, see server/session.c) must stay
    exactly the set the client subscribed to through any mix of adds, re-adds and removals: the
    client_list service reports its size, the $SYS-like stats the broker's total."""

    def ask(self, ctl, cmd):
        ctl.publish("admin/ctl/" + cmd, b"", qos=0)
        return ctl.recv_publish(topic="admin/out/" + cmd).payload.decode()

    def test_random_subscribe_unsubscribe_keeps_the_record_exact(self):
        self.start_broker([plug("admin_test")])
        ctl = RawClient(self.port, 5)
        self._clients.append(ctl)
        ctl.connect("ctl")
        ctl.subscribe("admin/out/#", 0)
        base = int(dict(kv.split("=") for kv in self.ask(ctl, "stats").split())["subscriptions"])
        c = RawClient(self.port, 5)
        self._clients.append(c)
        c.connect("table")
        rnd = random.Random(7)
        names = ["t/%d/+" % i if i % 3 else "t/%d" % i for i in range(600)]
        model = set()
        for step in range(60):
            batch = rnd.sample(names, rnd.randrange(1, 40))
            if rnd.random() < 0.55:
                c.subscribe([(f, rnd.randrange(3)) for f in batch])
                model.update(batch)
            else:
                ua = c.unsubscribe(batch)
                # [MQTT-3.11.3-1]: one reason code per filter; 0x11 when there was none.
                self.assertEqual(ua.codes, [0 if f in model else 0x11 for f in batch], "step %d" % step)
                model.difference_update(batch)
            if step % 6 == 5:
                listed = {e.split(":")[0]: e.split(":")[2] for e in self.ask(ctl, "clients").split(",")}
                self.assertEqual(int(listed["table"]), len(model), "step %d" % step)
        c.disconnect()
        wait_until(lambda: int(dict(kv.split("=") for kv in self.ask(ctl, "stats").split())
                               ["subscriptions"]) == base, what="the session's filters gone")


class BlackholeProxy:
    """A TCP relay to the broker that can freeze: from then on it reads and writes nothing and closes
    nothing, as a path whose peer vanished without FIN or RST. Small socket buffers, so the broker's
    writes back up quickly."""

    def __init__(self, port):
        self.target = port
        self.ls = socket.socket()
        self.ls.bind((HOST, 0))
        self.ls.listen(1)
        self.port = self.ls.getsockname()[1]
        self.frozen = threading.Event()
        self.done = threading.Event()
        self.down = None
        self.up = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        self.down, _ = self.ls.accept()
        self.up = socket.socket()
        self.up.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.up.connect((HOST, self.target))
        sel = selectors.DefaultSelector()
        sel.register(self.down, selectors.EVENT_READ, self.up)
        sel.register(self.up, selectors.EVENT_READ, self.down)
        while not self.frozen.is_set() and not self.done.is_set():
            for key, _ in sel.select(timeout=0.05):
                try:
                    data = key.fileobj.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self.done.set()
                    break
                key.data.sendall(data)
        sel.close()

    def freeze(self):
        self.frozen.set()
        self.t.join(5)

    def upstream_closed(self):
        """True once the broker closed its end (EOF or RST on the frozen upstream socket). Reading
        it here does not unfreeze the path: the client side still gets nothing."""
        self.up.setblocking(False)
        try:
            while True:
                data = self.up.recv(1 << 20)
                if not data:
                    return True
        except BlockingIOError:
            return False
        except OSError:
            return True

    def close(self):
        self.done.set()
        for s in (self.down, self.up, self.ls):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


if __name__ == "__main__":
    unittest.main()
