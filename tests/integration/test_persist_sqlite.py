"""plugins/persist-sqlite against the real broker (issue 7): what was acknowledged
survives a clean restart and SIGKILL; expiry, wills and incoming QoS 2 across a
restart; files that are refused and left alone; a full disk.

The promise under test (docs/persistence.md): a message whose PUBACK/PUBREC the
publisher received, and a subscription whose SUBACK the client received, are there
after the broker restarts, however it stopped. QoS 2 is delivered exactly once
[MQTT-4.3.3-3], QoS 1 at least once [MQTT-4.3.2-2], in order per publisher
[MQTT-4.6.0-5]. Session state is kept across a restart as for a reconnect
[MQTT-3.1.2-4], [MQTT-3.1.2-23].
"""

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

from midgetest import (Broker, BrokerTest, RawClient, only_midge, wait_until, free_port,
                       tmp_root, midge_bin, PUBACK, PUBREC, PUBREL, PUBCOMP, PUBLISH, QUIET,
                       TIMEOUT, Closed, ack_packet, publish_packet)

NEVER = 0xFFFFFFFF


def plugin_path():
    """build/plugins/persist-sqlite/.libs/persist-sqlite.so, found from the build dir or the binary."""
    bases = [os.environ.get("MIDGE_BUILDDIR")]
    if os.environ.get("MIDGE_BIN"):
        bases.append(os.path.dirname(os.path.dirname(os.path.abspath(os.environ["MIDGE_BIN"]))))
    for b in bases:
        if b:
            p = os.path.join(b, "plugins", "persist-sqlite", ".libs", "persist-sqlite.so")
            if os.path.exists(p):
                return p
    return None


PLUGIN = plugin_path()
need_plugin = unittest.skipUnless(PLUGIN, "persist-sqlite.so not built (run through make check "
                                          "or set MIDGE_BUILDDIR)")


@only_midge("the persist-sqlite plugin")
@need_plugin
class PersistSqlite(BrokerTest):
    """Each test manages its brokers: start(), restart(kill=...)."""

    def setUp(self):
        self._clients = []
        self.dir = tempfile.mkdtemp(prefix="psq-", dir=tmp_root())
        self.db = os.path.join(self.dir, "data", "midge.db")
        self.extra = []
        self.broker = None
        self.mounted = None

    def tearDown(self):
        try:
            if self.broker is not None:
                super().tearDown()
        finally:
            if self.mounted:
                if self.broker is not None and self.broker.alive():
                    self.broker.kill()
                subprocess.run(["umount", self.mounted], check=False)

    def config(self):
        return ["plugin " + PLUGIN, "plugin_opt_db " + self.db] + self.extra

    def start(self):
        self.broker = Broker(self.config()).start()
        self.port = self.broker.port
        self.broker.wait_log(lambda l: "persistence:" in l and "restored" in l, what="restore done")
        return self.broker

    def restart(self, kill=False):
        """Stops (SIGTERM, checked) or kills the broker and starts a new one on the same file."""
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        self._clients = []
        if kill:
            self.broker.kill()
        else:
            self.assertEqual(self.broker.stop(), 0, self.broker.log_text()[-2000:])
            self.assertIn("plugin=persist-sqlite closed", self.broker.log_text())
        self.broker = None
        return self.start()

    def client(self, cid, version=5, clean=True, expiry=None, will=None):
        c = RawClient(self.port, version)
        self._clients.append(c)
        props = [("session_expiry", expiry)] if expiry is not None and version == 5 else None
        c.connect(cid, clean=clean, props=props, will=will)
        return c

    def persistent(self, cid, version):
        """A session that outlives its connection: clean session 0 (v3) or expiry never (v5)."""
        if version == 5:
            return self.client(cid, 5, clean=False, expiry=NEVER)
        return self.client(cid, version, clean=False)

    def drain(self, c, want, timeout=10.0):
        """Receives (and acknowledges) publishes until `want` arrived and the broker is quiet."""
        got = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                got.append(c.recv_publish(timeout=QUIET if len(got) >= want else TIMEOUT))
            except AssertionError:
                if len(got) >= want:
                    break
        return got

    def refused(self, lines, user=None):
        """Runs midge on a config that must be refused; returns its output (exit code checked)."""
        conf = os.path.join(self.dir, "refused.conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\n" % free_port() + "\n".join(lines) + "\n")
        argv = [midge_bin(), "-c", conf]
        if user is not None:
            os.chmod(self.dir, 0o755)
            os.chmod(conf, 0o644)
            argv = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + argv
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30,
                           stdin=subprocess.DEVNULL)
        out = r.stdout.decode("utf-8", "replace")
        self.assertNotEqual(r.returncode, 0, "midge started on a file it must refuse:\n" + out)
        return out

    # -- restart keeps everything -----------------------------------------------------

    def check_restart_keeps_state(self, version, kill):
        self.start()
        sub = self.persistent("keep-sub", version)
        sub.subscribe([("pk/q1", 1), ("pk/q2", 2)])
        sub.disconnect()
        pub = self.client("keep-pub", version)
        for i in range(5):
            self.assertEqual(pub.publish("pk/q1", b"one-%d" % i, qos=1).rc, 0)
            self.assertEqual(pub.publish("pk/q2", b"two-%d" % i, qos=2).rc, 0)
        self.assertEqual(pub.publish("pk/ret", b"retained", qos=1, retain=True).rc, 0)
        self.restart(kill=kill)
        sub = self.persistent("keep-sub", version)
        self.assertTrue(sub.connack.session_present, "session kept [MQTT-3.1.2-4]")
        got = self.drain(sub, 10)
        self.assertEqual([(p.topic, p.payload, p.qos) for p in got],
                         [("pk/q1", b"one-%d" % (i // 2), 1) if i % 2 == 0 else
                          ("pk/q2", b"two-%d" % (i // 2), 2) for i in range(10)])
        # The subscriptions are back: live messages arrive.
        pub = self.client("keep-pub2", version)
        pub.publish("pk/q2", b"live", qos=2)
        self.assertEqual(sub.recv_publish().payload, b"live")
        # The retained message is served to a new subscriber.
        other = self.client("keep-other", version)
        other.subscribe("pk/ret", 1)
        p = other.recv_publish()
        self.assertEqual((p.payload, p.retain), (b"retained", True))

    def test_clean_restart_keeps_state_v311(self):
        self.check_restart_keeps_state(4, kill=False)

    def test_clean_restart_keeps_state_v5(self):
        self.check_restart_keeps_state(5, kill=False)

    def test_sigkill_keeps_acknowledged_v311(self):
        self.check_restart_keeps_state(4, kill=True)

    def test_sigkill_keeps_acknowledged_v5(self):
        self.check_restart_keeps_state(5, kill=True)

    def test_inflight_redelivered_after_restart(self):
        """A message sent but not acknowledged comes again with DUP [MQTT-4.4.0-1]."""
        self.start()
        sub = self.persistent("infl-sub", 5)
        sub.subscribe("pi/t", 1)
        pub = self.client("infl-pub")
        pub.publish("pi/t", b"unacked", qos=1)
        first = sub.recv_publish(ack=False)
        self.restart(kill=True)
        sub = self.persistent("infl-sub", 5)
        again = sub.recv_publish()
        self.assertEqual((again.payload, again.pid, again.dup), (b"unacked", first.pid, True))

    def test_unsubscribe_and_session_end_are_kept(self):
        self.start()
        a = self.persistent("gone-a", 5)
        a.subscribe("pg/a", 1)
        a.subscribe("pg/b", 1)
        a.unsubscribe("pg/a")
        a.disconnect()
        b = self.persistent("gone-b", 4)
        b.subscribe("pg/b", 1)
        b.disconnect()
        # gone-b ends its session with a clean connect (v3: clean session 1 discards it).
        self.client("gone-b", 4, clean=True).disconnect()
        pub = self.client("gone-pub")
        pub.publish("pg/a", b"not for a", qos=1)
        pub.publish("pg/b", b"for a", qos=1)
        self.restart(kill=True)
        a = self.persistent("gone-a", 5)
        got = self.drain(a, 1)
        self.assertEqual([p.payload for p in got], [b"for a"])
        b = self.persistent("gone-b", 4)
        self.assertFalse(b.connack.session_present)
        b.no_publish()

    # -- expiry, wills, incoming QoS 2 across a restart ---------------------------------

    def test_session_expiry_counts_across_restart(self):
        """A session expires after its interval, downtime included [MQTT-3.1.2-23]."""
        self.start()
        for cid, expiry in (("exp-short", 60), ("exp-long", 3600)):
            c = self.client(cid, 5, clean=False, expiry=expiry)
            c.subscribe("pe/t", 1)
            c.disconnect()
        self.client("exp-pub").publish("pe/t", b"queued", qos=1)
        self.broker.stop()
        # The broker was down for 120 s (the clock stands still for the test: the file moves back).
        con = sqlite3.connect(self.db)
        con.execute("UPDATE sessions SET disconnected_at = disconnected_at - 120")
        con.commit()
        con.close()
        self.broker = None
        self.start()
        self.assertIn("expired=1", self.broker.log_text())
        short = self.client("exp-short", 5, clean=False, expiry=60)
        self.assertFalse(short.connack.session_present)
        short.no_publish()
        long_ = self.client("exp-long", 5, clean=False, expiry=3600)
        self.assertTrue(long_.connack.session_present)
        self.assertEqual(long_.recv_publish().payload, b"queued")

    def test_delayed_will_published_after_restart(self):
        """A will with a delay still pending at shutdown is published after the restart
        [MQTT-3.1.3-9]."""
        self.start()
        watcher = self.persistent("will-watch", 5)
        watcher.subscribe("pw/will", 1)
        watcher.disconnect()
        c = self.client("will-client", 5, clean=False, expiry=300,
                        will={"topic": "pw/will", "payload": b"lost", "qos": 1,
                              "props": [("will_delay", 3)]})
        c.close()  # no DISCONNECT: the will is due in 3 s
        wait_until(lambda: self.db_count("wills") == 1, what="will stored")
        self.restart(kill=True)
        watcher = self.persistent("will-watch", 5)
        p = watcher.recv_publish(timeout=15)
        self.assertEqual((p.topic, p.payload), ("pw/will", b"lost"))

    def test_incoming_qos2_completes_once_after_restart(self):
        """PUBREC sent, then a restart: the PUBLISH sent again is not delivered twice and
        the PUBREL after the restart completes it [MQTT-4.3.3-3], [MQTT-4.3.3-9]."""
        self.start()
        sub = self.persistent("q2-sub", 5)
        sub.subscribe("pq/t", 2)
        sub.disconnect()
        pub = self.client("q2-pub", 5, clean=False, expiry=300)
        pub.send(publish_packet("pq/t", b"exactly once", qos=2, pid=42, version=5))
        self.assertEqual(pub.expect(PUBREC, pid=42).rc, 0)
        self.restart(kill=True)
        pub = self.client("q2-pub", 5, clean=False, expiry=300)
        self.assertTrue(pub.connack.session_present)
        pub.send(publish_packet("pq/t", b"exactly once", qos=2, pid=42, dup=True, version=5))
        pub.expect(PUBREC, pid=42)
        pub.send(ack_packet(PUBREL, 42, version=5))
        self.assertEqual(pub.expect(PUBCOMP, pid=42).rc, 0)
        sub = self.persistent("q2-sub", 5)
        got = self.drain(sub, 1)
        self.assertEqual([p.payload for p in got], [b"exactly once"])
        wait_until(lambda: self.db_count("qos2_in") == 0, what="qos2_in row released")

    def db_count(self, table):
        con = sqlite3.connect(self.db, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM " + table).fetchone()[0]
        finally:
            con.close()

    # -- the crash test -------------------------------------------------------------------

    @staticmethod
    def publish_numbered(port, topic, version, qos, stop, counter, acked):
        """Publishes 0, 1, 2, ... on topic until stop (or the broker dies); appends each
        number whose PUBACK/PUBREC arrived to acked. counter: [next number]."""
        try:
            c = RawClient(port, version)
            c.connect("pub-" + topic.replace("/", "-"), clean=True)
            while not stop.is_set():
                n = counter[0]
                counter[0] = n + 1
                if c.publish(topic, b"%d" % n, qos=qos).rc == 0:
                    acked.append(n)
        except (OSError, AssertionError, Closed):
            pass

    def kill_round(self, rnd, threads, stop, acked, at_least, what):
        """Runs threads (they end once stop is set) until the lists of acked grew by more
        than at_least, kills the broker with SIGKILL at a random moment after that, joins
        the threads and starts the broker again."""
        base = sum(len(a) for a in acked.values())
        for t in threads:
            t.start()
        wait_until(lambda: sum(len(a) for a in acked.values()) > base + at_least, timeout=10,
                   what=what)
        deadline = time.monotonic() + rnd.uniform(0.05, 0.4)
        while time.monotonic() < deadline:
            time.sleep(0.01)
        self.broker.kill()
        stop.set()
        for t in threads:
            t.join(10)
        self.broker = None
        self.start()

    def test_crash_loop_20_kills(self):
        """Numbered QoS 1 and 2 publishes from 4 publishers (3.1.1 and 5) to offline
        persistent subscribers (3.1.1 and 5), SIGKILL at random moments, 20 times. Every
        acknowledged message arrives, QoS 2 exactly once, QoS 1 at least once, in order
        per publisher; acknowledged retained messages and subscriptions are all there."""
        rnd = random.Random(int(os.environ.get("MIDGE_CRASH_SEED", "0")) or None)
        # Offline queues unbounded: a drop by the queue limit is not what this test is about.
        self.extra = ["max_queued_messages 0"]
        self.start()
        subs = {"crash-sub-v4": 4, "crash-sub-v5": 5}
        for cid, v in subs.items():
            c = self.persistent(cid, v)
            c.subscribe("crash/#", 2)
            c.disconnect()
        pubs = [("p0", 4, 1), ("p1", 5, 1), ("p2", 4, 2), ("p3", 5, 2)]
        acked = {name: [] for name, _, _ in pubs}
        next_n = {name: [0] for name, _, _ in pubs}
        kept_sessions = []   # (client id, version) whose SUBACK arrived
        kept_retained = []   # topics whose retained PUBLISH was acknowledged

        def keeper(port, rnd_round, stop):
            i = 0
            try:
                while not stop.is_set():
                    v = 5 if i % 2 else 4
                    cid = "keep-%d-%d" % (rnd_round, i)
                    c = RawClient(port, v)
                    if v == 5:
                        c.connect(cid, clean=False, props=[("session_expiry", NEVER)])
                    else:
                        c.connect(cid, clean=False)
                    c.subscribe("kept/%s" % cid, 1)
                    topic = "ret/%d/%d" % (rnd_round, i)
                    if c.publish(topic, b"r", qos=1, retain=True).rc == 0:
                        kept_retained.append(topic)
                        # The broker does not hold SUBACK yet (see
                        # test_suback_held_until_durable); a PUBACK after it on the
                        # same connection is held until everything before is durable.
                        kept_sessions.append((cid, v))
                    c.close()
                    i += 1
            except (OSError, AssertionError, Closed):
                pass

        for rnd_round in range(20):
            stop = threading.Event()
            threads = [threading.Thread(target=self.publish_numbered,
                                        args=(self.port, "crash/" + n, v, q, stop, next_n[n],
                                              acked[n]))
                       for n, v, q in pubs]
            threads.append(threading.Thread(target=keeper, args=(self.port, rnd_round, stop)))
            self.kill_round(rnd, threads, stop, acked, 0,
                            "publishes acknowledged in round %d" % rnd_round)

        total = {n: len(a) for n, a in acked.items()}
        self.assertTrue(all(total.values()), total)
        for cid, v in subs.items():
            c = self.persistent(cid, v)
            self.assertTrue(c.connack.session_present)
            want = sum(total.values())
            got = self.drain(c, want, timeout=25)
            seen = {name: [] for name, _, _ in pubs}
            for p in got:
                seen[p.topic.split("/")[1]].append(int(p.payload))
            for name, _, qos in pubs:
                s = seen[name]
                missing = sorted(set(acked[name]) - set(s))
                self.assertEqual(len(missing), 0, "%s lost %d of %d acknowledged %s messages, "
                                 "first %s" % (cid, len(missing), len(acked[name]), name,
                                               missing[:10]))
                self.assertTrue(s == sorted(s), "%s: %s out of order" % (cid, name))
                if qos == 2:
                    self.assertEqual(len(s), len(set(s)), "%s: QoS 2 duplicates" % cid)
            c.disconnect()
        # Retained messages and subscriptions acknowledged before a kill.
        r = self.client("ret-check")
        r.subscribe("ret/#", 1)
        got = {p.topic for p in self.drain(r, len(kept_retained))}
        self.assertEqual(len(set(kept_retained) - got), 0, "retained messages lost")
        pub = self.client("kept-pub")
        for cid, v in kept_sessions:
            c = self.persistent(cid, v)
            self.assertTrue(c.connack.session_present, cid)
            pub.publish("kept/%s" % cid, b"x", qos=1)
            self.assertEqual(c.recv_publish().topic, "kept/%s" % cid)
            c.close()

    def test_crash_loop_online_subscribers(self):
        """The young-delivery log (docs/persistence.md) under kill -9: numbered QoS 1 and 2
        publishes from 4 publishers to persistent subscribers (3.1.1 and 5) that are online
        and acknowledging, so most deliveries are queued, sent and finished within a few
        transactions. SIGKILL at random moments, 10 times; each subscriber reconnects after
        each restart. Every message whose PUBACK/PUBREC the publisher received reaches each
        subscriber [MQTT-4.3.2-2]: none is lost with the log's row, none left unfinished."""
        rnd = random.Random(int(os.environ.get("MIDGE_CRASH_SEED", "0")) or None)
        self.extra = ["max_queued_messages 0"]
        self.start()
        subs = {"online-sub-v4": 4, "online-sub-v5": 5}
        for cid, v in subs.items():
            c = self.persistent(cid, v)
            c.subscribe("online/#", 1)
            c.disconnect()
        pubs = [("p0", 4, 1), ("p1", 5, 1), ("p2", 4, 2), ("p3", 5, 2)]
        acked = {name: [] for name, _, _ in pubs}
        next_n = {name: [0] for name, _, _ in pubs}
        seen = {cid: {name: set() for name, _, _ in pubs} for cid in subs}

        def subscriber(port, cid, version, stop):
            try:
                c = RawClient(port, version)
                if version == 5:
                    c.connect(cid, clean=False, props=[("session_expiry", NEVER)])
                else:
                    c.connect(cid, clean=False)
                while not stop.is_set():
                    try:
                        p = c.recv_publish(timeout=0.2)
                    except AssertionError:
                        continue
                    seen[cid][p.topic.split("/")[1]].add(int(p.payload))
            except (OSError, Closed):
                pass

        for rnd_round in range(10):
            stop = threading.Event()
            threads = [threading.Thread(target=subscriber, args=(self.port, cid, v, stop))
                       for cid, v in subs.items()]
            threads += [threading.Thread(target=self.publish_numbered,
                                         args=(self.port, "online/" + n, v, q, stop, next_n[n],
                                               acked[n]))
                        for n, v, q in pubs]
            self.kill_round(rnd, threads, stop, acked, 200,
                            "publishes acknowledged in round %d" % rnd_round)

        total = sum(len(a) for a in acked.values())
        for cid, v in subs.items():
            c = self.persistent(cid, v)
            self.assertTrue(c.connack.session_present, cid)
            for p in self.drain(c, 0, timeout=25):
                seen[cid][p.topic.split("/")[1]].add(int(p.payload))
            for name, _, _ in pubs:
                missing = sorted(set(acked[name]) - seen[cid][name])
                self.assertEqual(len(missing), 0, "%s lost %d of %d acknowledged %s messages "
                                 "(%d in all), first %s" % (cid, len(missing), len(acked[name]),
                                                            name, total, missing[:10]))
            c.disconnect()

    def test_suback_held_until_durable(self):
        """DESIGN.md section 5: a SUBACK is sent only once the subscription is durable.
        Expected to fail until the broker holds SUBACK as it holds PUBACK (reported to
        the lead with the plugin): with the disk full, the SUBACK must not arrive."""
        self.fill_disk_or_skip()
        self.start()
        c = self.persistent("suback-sub", 5)
        filler = self.fill()
        pid = c.pid()
        from midgetest import subscribe_packet, SUBACK
        c.send(subscribe_packet(pid, [("sa/t", 1)], [], 5))
        self.broker.wait_log(lambda l: "cannot write the database" in l, what="failure logged")
        self.assertRaises(AssertionError, c.expect, SUBACK, QUIET, pid)
        os.unlink(filler)
        c.expect(SUBACK, timeout=10, pid=pid)

    def fill_disk_or_skip(self):
        data = os.path.dirname(self.db)
        os.makedirs(data)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", data],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            self.skipTest("cannot mount a small tmpfs to fill: %s" % r.stdout.decode().strip())
        self.mounted = data

    def fill(self):
        """Fills the small file system; returns the filler's path (unlink it to make room)."""
        filler = os.path.join(os.path.dirname(self.db), "filler")
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        return filler

    # -- files that are refused and left alone -------------------------------------------

    def prepared_db(self):
        """A midge database with one persistent session, the broker stopped."""
        self.start()
        c = self.persistent("file-sub", 5)
        c.subscribe("pf/t", 1)
        c.disconnect()
        self.broker.stop()
        self.broker = None
        with open(self.db, "rb") as f:
            return f.read()

    def assert_untouched(self, before):
        with open(self.db, "rb") as f:
            self.assertEqual(f.read(), before, "the refused file was modified")
        self.assertFalse(os.path.exists(self.db + "-wal"))

    def test_refuses_corrupted_database(self):
        self.prepared_db()
        with open(self.db, "r+b") as f:
            f.seek(4096)
            f.write(bytes((i * 7919) & 0xFF for i in range(4096)))
        with open(self.db, "rb") as f:
            before = f.read()
        out = self.refused(self.config())
        self.assertIn("is corrupted", out)
        self.assert_untouched(before)

    def test_refuses_newer_schema(self):
        self.prepared_db()
        con = sqlite3.connect(self.db)
        con.execute("INSERT INTO schema_version VALUES(99, 0)")
        con.commit()
        con.close()
        with open(self.db, "rb") as f:
            before = f.read()
        out = self.refused(self.config())
        self.assertIn("has schema version 99, written by a newer midge", out)
        self.assert_untouched(before)

    def test_refuses_file_that_is_not_a_midge_database(self):
        os.makedirs(os.path.dirname(self.db))
        for content in (b"some notes, not a database\n", None):
            if content is None:
                if os.path.exists(self.db):
                    os.unlink(self.db)
                con = sqlite3.connect(self.db)
                con.execute("CREATE TABLE sessions(name TEXT)")
                con.commit()
                con.close()
                want = "of another application"
            else:
                with open(self.db, "wb") as f:
                    f.write(content)
                want = "is not an SQLite database"
            with open(self.db, "rb") as f:
                before = f.read()
            out = self.refused(self.config())
            self.assertIn(want, out)
            self.assert_untouched(before)

    def test_refuses_read_only_directory(self):
        """As an unprivileged user (root may write anywhere): a clear error, nothing created."""
        if os.geteuid() != 0 or not shutil.which("setpriv"):
            self.skipTest("needs root and setpriv to run the broker as an unprivileged user")
        self.dir = tempfile.mkdtemp(prefix="psq-ro-")  # the test root is 0700
        self.addCleanup(shutil.rmtree, self.dir, True)
        os.chmod(self.dir, 0o755)
        self.db = os.path.join(self.dir, "data", "midge.db")
        data = os.path.dirname(self.db)
        os.makedirs(data)
        os.chmod(data, 0o755)  # owned by root: not writable for uid 65534
        for d in (os.path.dirname(midge_bin()), os.path.dirname(PLUGIN)):
            if not os.access(d, os.R_OK | os.X_OK):
                self.skipTest("%s is not readable for an unprivileged user" % d)
        probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                "test", "-x", midge_bin()])
        if probe.returncode != 0:
            self.skipTest("the broker binary is not executable by uid 65534")
        out = self.refused(self.config(), user=65534)
        self.assertIn("is not writable", out)
        self.assertEqual(os.listdir(data), [])

    # -- a full disk ----------------------------------------------------------------------

    def test_disk_full_refuses_then_recovers(self):
        """On a full file system QoS 1 publishes to persistent sessions are refused (v5:
        0x97 Quota exceeded; v3: no PUBACK), QoS 0 still flows, and once there is room
        again everything held is acknowledged and stored."""
        self.fill_disk_or_skip()
        self.start()
        sub = self.persistent("full-sub", 5)
        sub.subscribe("full/#", 1)
        sub.disconnect()
        live = self.client("full-live")
        live.subscribe("full/#", 0)
        filler = self.fill()
        v5 = self.client("full-v5")
        v3 = self.client("full-v3", 4)
        # The first one cannot be stored: its PUBACK is held while the plugin retries.
        held = v5.publish("full/held", b"h" * 100000, qos=1, wait_ack=False)
        self.broker.wait_log(lambda l: "cannot write the database" in l, what="failure logged")
        self.broker.wait_log(lambda l: "reports failing storage" in l, what="broker refuses")
        self.assertEqual(v5.publish("full/a", b"x", qos=1).rc, 0x97)
        pid = v3.publish("full/b", b"x", qos=1, wait_ack=False)
        self.assertRaises(AssertionError, v3.expect, PUBACK, QUIET, pid)
        v5.publish("full/qos0", b"still", qos=0)
        self.assertEqual(live.recv_publish(topic="full/qos0").payload, b"still")
        self.assertEqual(self.broker.log_text().count("cannot write the database"), 1)
        os.unlink(filler)
        self.assertEqual(v5.expect(PUBACK, timeout=10, pid=held).rc, 0)
        self.broker.wait_log(lambda l: "storage recovered" in l, what="recovery logged")
        self.assertEqual(v5.publish("full/c", b"y", qos=1).rc, 0)
        self.restart(kill=True)
        sub = self.persistent("full-sub", 5)
        got = [p.topic for p in self.drain(sub, 2)]
        self.assertEqual([t for t in got if t in ("full/held", "full/c")], ["full/held", "full/c"])


if __name__ == "__main__":
    unittest.main()
