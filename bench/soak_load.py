#!/usr/bin/python3
"""Mixed MQTT load for bench/soak.sh: runs until --duration seconds have passed.

Roles, each a thread with its own raw-socket client (tests/integration/midgetest.py):
  - 3 publishers, one per QoS (0, 1, 2), on soak/<pub>/<n>/<qos> at a bounded rate;
  - 3 wildcard subscribers ("soak/#" QoS 2, "soak/+/+/1" QoS 1, "soak/q0/+/0" QoS 0, one of them MQTT 5);
  - a retainer setting retained messages on 2,000 rotating topics (soak/ret/<i/100>/<i>) and
    clearing some;
  - churners: connect (clean or persistent session from a bounded pool of ids, v4 or v5),
    subscribe to a wildcard (which also delivers retained messages), publish, then leave with
    DISCONNECT, by dropping the socket, or with a will.
The rates are modest on purpose: the soak looks for growth over time, not throughput, and the
machine is shared. Prints one line of totals per minute and a final summary; exit code 1 when a
role stopped with an error (e.g. the broker stopped answering).
"""

import argparse
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from midgetest import RawClient, Closed, packet, PINGREQ, PINGRESP  # noqa: E402

PINGREQ_PACKET = packet(PINGREQ, 0, b"")
ACK_WAIT = 30.0  # a shared, loaded machine: an answer later than this is an error worth a look


class SoakClient(RawClient):
    """RawClient waiting ACK_WAIT for answers (its tests' default is 3 s)."""

    def __init__(self, port, version):
        super().__init__(port, version, timeout=ACK_WAIT)

    def expect(self, ptype, timeout=ACK_WAIT, pid=None):
        return super().expect(ptype, timeout, pid)

    def connect(self, *a, **kw):
        kw.setdefault("timeout", ACK_WAIT)
        return super().connect(*a, **kw)

counts = {}
counts_lock = threading.Lock()
errors = []
stop = threading.Event()


def count(key, n=1):
    with counts_lock:
        counts[key] = counts.get(key, 0) + n


def role(fn):
    """Runs a role until stop; an exception is recorded as an error, then the role restarts
    (a churner can lose a race with its own session takeover; the broker must not)."""
    def run(*a):
        while not stop.is_set():
            try:
                fn(*a)
            except Exception as e:  # noqa: BLE001 - any failure is reported at the end
                if stop.is_set():
                    return
                errors.append("%s%r: %r" % (fn.__name__, a[1:], e))
                count("errors")
                if len(errors) <= 50:
                    print("soak-load error: %s" % errors[-1], flush=True)
                time.sleep(1)
    return run


@role
def publisher(port, qos, rate):
    c = SoakClient(port, 4 if qos != 1 else 5)
    c.connect("soak-pub-%d" % qos, keepalive=30)
    n = 0
    period = 1.0 / rate
    nxt = time.monotonic()
    while not stop.is_set():
        topic = "soak/q%d/%d/%d" % (qos, n % 50, qos)
        c.publish(topic, b"x" * (16 + n % 512), qos=qos)
        count("pub_q%d" % qos)
        n += 1
        nxt += period
        d = nxt - time.monotonic()
        if d > 0:
            time.sleep(d)
        else:
            nxt = time.monotonic()
        # keep the socket's input (acks of QoS 0: none) drained
        c.pending.clear()
    c.disconnect()


@role
def subscriber(port, filt, qos, version):
    c = SoakClient(port, version)
    c.connect("soak-sub-%s-%d" % (filt.replace("/", "_").replace("#", "H").replace("+", "P"), qos),
              keepalive=30)
    c.subscribe(filt, qos)
    ping_at = time.monotonic() + 10
    while not stop.is_set():
        if time.monotonic() >= ping_at:
            # A subscriber sends nothing else at QoS 0: keep alive needs a packet [MQTT-3.1.2-23].
            c.send(PINGREQ_PACKET)
            c.pending = [p for p in c.pending if p.type != PINGRESP]
            ping_at = time.monotonic() + 10
        try:
            c.recv_publish(timeout=1.0)
            count("recv")
        except AssertionError as e:
            if "timed out" not in str(e):
                raise
    c.disconnect()


@role
def retainer(port, rate):
    c = SoakClient(port, 4)
    c.connect("soak-retainer", keepalive=30)
    n = 0
    while not stop.is_set():
        i = random.randrange(2000)
        if n % 10 == 9:
            c.publish("soak/ret/%d/%d" % (i // 100, i), b"", qos=1, retain=True)  # clear
            count("retain_clear")
        else:
            c.publish("soak/ret/%d/%d" % (i // 100, i), b"r" * (8 + i % 200), qos=1, retain=True)
            count("retain_set")
        n += 1
        time.sleep(1.0 / rate)
    c.disconnect()


def churn_filter(rnd):
    """A wildcard subscription: some bring retained messages (about 100, one, or all 2,000)."""
    return rnd.choice(("soak/ret/%d/+" % rnd.randrange(20), "soak/ret/+/%d" % rnd.randrange(2000),
                       "soak/q1/#", "soak/+/7/+", "$SYS/#", "soak/will/+", "soak/ret/%d/+" % rnd.randrange(20),
                       "soak/ret/#"))


@role
def churner(port, idx, rate):
    rnd = random.Random(idx)
    while not stop.is_set():
        version = rnd.choice((4, 5))
        clean = rnd.random() < 0.7
        cid = "soak-churn-%d-%d" % (idx, rnd.randrange(20))  # bounded pool: sessions stay bounded
        c = SoakClient(port, version)
        will = None
        props = None
        if version == 5 and not clean:
            props = [("session_expiry", 60)]
        if rnd.random() < 0.2:
            will = {"topic": "soak/will/%d" % idx, "payload": b"gone", "qos": 1}
        try:
            kw = {"props": props} if props else {}
            c.connect(cid, clean=clean, keepalive=20, will=will, **kw)
            count("connects")
            filt = churn_filter(rnd)
            sa = c.subscribe(filt, rnd.randrange(3))
            if sa.codes[0] >= 0x80:
                raise AssertionError("SUBACK refused %s: %r" % (filt, sa))
            c.publish("soak/churn/%d" % idx, b"hello", qos=rnd.randrange(3))
            # read what the subscription brought (retained messages) for a moment
            end = time.monotonic() + rnd.random() * 0.3
            while time.monotonic() < end:
                try:
                    c.recv_publish(timeout=0.05)
                    count("churn_recv")
                except AssertionError:
                    pass
            how = rnd.random()
            if how < 0.6:
                c.disconnect()
                count("disconnect")
            else:
                c.close()  # dropped: the will (if any) goes out
                count("dropped")
        except Closed:
            c.close()  # taken over by a sibling with the same id: fine
            count("taken_over")
        time.sleep(rnd.random() * 2.0 / rate)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--duration", type=float, default=1800)
    ap.add_argument("--rate", type=float, default=100, help="messages/s per publisher")
    ap.add_argument("--churners", type=int, default=4)
    args = ap.parse_args()
    random.seed(1)
    threads = []
    for filt, qos, v in (("soak/#", 2, 4), ("soak/+/+/1", 1, 5), ("soak/q0/+/0", 0, 4)):
        threads.append(threading.Thread(target=subscriber, args=(args.port, filt, qos, v)))
    for qos in (0, 1, 2):
        threads.append(threading.Thread(target=publisher, args=(args.port, qos, args.rate)))
    threads.append(threading.Thread(target=retainer, args=(args.port, args.rate / 2)))
    for i in range(args.churners):
        threads.append(threading.Thread(target=churner, args=(args.port, i, 5.0)))
    for t in threads:
        t.daemon = True
        t.start()
    t0 = time.monotonic()
    last = t0
    while time.monotonic() - t0 < args.duration:
        time.sleep(1)
        if time.monotonic() - last >= 60:
            last = time.monotonic()
            with counts_lock:
                print("soak-load %4.0fs %s" % (last - t0, " ".join(
                    "%s=%d" % kv for kv in sorted(counts.items()))), flush=True)
    stop.set()
    for t in threads:
        t.join(15)
    with counts_lock:
        print("soak-load total %s" % " ".join("%s=%d" % kv for kv in sorted(counts.items())))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
