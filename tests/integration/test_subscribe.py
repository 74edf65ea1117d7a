"""SUBSCRIBE / UNSUBSCRIBE: wildcards, the $-topic rule, shared subscriptions, v5 options."""

from midgetest import (BrokerTest, subscribe_packet, unsubscribe_packet, sub_opts, SUBACK, UNSUBACK,
                       DISCONNECT, PUBLISH, IS_MIDGE, mosquitto_deviation, paho_props)


# (filter, topics it must match, topics it must not match) - examples of MQTT 3.1.1/5.0 section 4.7
MATCHING = [
    ("sport/tennis/player1/#", ["sport/tennis/player1", "sport/tennis/player1/ranking",
                                "sport/tennis/player1/score/wimbledon"], ["sport/tennis/player2"]),
    ("sport/#", ["sport", "sport/tennis"], ["sports"]),
    ("sport/tennis/+", ["sport/tennis/player1", "sport/tennis/player2"],
     ["sport/tennis/player1/ranking", "sport/tennis"]),
    ("sport/+", ["sport/"], ["sport"]),
    ("+/+", ["/finance", "a/b"], ["a", "a/b/c"]),
    ("/+", ["/finance"], ["finance", "a/b"]),
    ("+", ["finance"], ["/finance", "a/b"]),
    ("#", ["sport", "/finance", "a/b/c"], []),
    ("a/+/c", ["a/b/c", "a//c"], ["a/b/c/d", "a/c"]),
]
ALL_TOPICS = sorted({t for _, m, n in MATCHING for t in m + n})


def topic_matches(flt, topic):
    """Reference matcher (4.7): + one level, # the rest (including the parent level)."""
    f, t = flt.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t):
            return False
        if part != "+" and part != t[i]:
            return False
    return len(f) == len(t)


class Wildcards(BrokerTest):

    def _wildcards(self, v):
        subs = []
        for i, (flt, _, _) in enumerate(MATCHING):
            s = self.raw(v)
            s.subscribe([(flt, 0), ("zz-marker/%d" % i, 0)])
            subs.append(s)
        pub = self.raw(v)
        for t in ALL_TOPICS:
            pub.publish(t, t.encode(), qos=1)
        for i, (flt, must, must_not) in enumerate(MATCHING):
            got = set(p.topic for p in self.marker(pub, subs[i], "zz-marker/%d" % i)
                      if not p.topic.startswith("zz-marker/"))
            want = set(t for t in ALL_TOPICS if topic_matches(flt, t))
            self.assertTrue(set(must) <= got, "%r must match %r, got %r" % (flt, sorted(set(must) - got), sorted(got)))
            self.assertFalse(set(must_not) & got, "%r must not match %r" % (flt, sorted(set(must_not) & got)))
            self.assertTrue(got <= want, "%r matched unexpected %r" % (flt, sorted(got - want)))

    def test_wildcards_v4(self):
        """+ and # matching per the spec examples, 3.1.1 numbering [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-3.3.2-3] (4.7.1.2, 4.7.1.3)."""
        self._wildcards(4)

    def test_wildcards_v5(self):
        """+ and # matching per the spec examples, 5.0 numbering [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-3.3.2-3]."""
        self._wildcards(5)

    def _invalid_filter(self, v, flt):
        c = self.raw(v)
        pid = c.pid()
        c.send(subscribe_packet(pid, [(flt, 0), ("ok/topic", 0)], version=v))
        try:
            sa = c.expect(SUBACK, pid=pid)
        except AssertionError:
            c.expect_closed(0.5)     # closing the connection is allowed too
            return
        self.assertGreaterEqual(sa.codes[0], 0x80, "invalid filter %r granted: %r" % (flt, sa))
        if v == 5:
            self.assertIn(sa.codes[0], (0x8F, 0x80))
        self.assertLess(sa.codes[1], 0x80, "the valid filter in the same SUBSCRIBE is granted [MQTT-3.8.4-4]")

    def test_invalid_filters(self):
        """Misplaced wildcards are rejected: SUBACK failure (0x80 / 0x8F) or close; 3.1.1 [MQTT-4.7.1-2] [MQTT-4.7.1-3],
        5.0 [MQTT-4.7.1-1] [MQTT-4.7.1-2]."""
        for v in (4, 5):
            for flt in ("a/#/b", "a+/b", "a/b#"):
                with self.subTest(v=v, filter=flt):
                    self._invalid_filter(v, flt)

    def test_suback_codes_and_packet_id(self):
        """SUBACK has the SUBSCRIBE's packet id and one granted QoS per filter, in order
        [MQTT-3.8.4-1] [MQTT-3.8.4-2] [MQTT-3.8.4-5] [MQTT-3.9.3-1] (3.1.1: -4, -5; 5.0: -5, -6)."""
        for v in (4, 5):
            c = self.raw(v)
            c.send(subscribe_packet(4711, [("s/0", 0), ("s/1", 1), ("s/2", 2)], version=v))
            sa = c.expect(SUBACK)
            self.assertEqual(sa.pid, 4711)
            self.assertEqual(sa.codes, [0, 1, 2])

    def test_dollar_topics_not_matched_by_wildcards(self):
        """Filters starting with # or + do not match $-topics; $SYS/# does [MQTT-4.7.2-1] (both versions)."""
        self.broker.stop()
        from midgetest import Broker
        self.broker = Broker(["sys_interval 1"]).start()
        self.port = self.broker.port
        wild4 = self.raw(4)
        wild4.subscribe([("#", 0), ("+/broker/#", 0), ("+/broker/uptime", 0)])
        wild5 = self.raw(5)
        wild5.subscribe([("#", 0), ("+/+/uptime", 0)])
        sys = self.raw(4)
        sys.subscribe("$SYS/broker/uptime", 0)
        sys.recv_publish(timeout=3)
        sys.recv_publish(timeout=3)    # one full $SYS round after the wildcard subscriptions
        pub = self.raw(4)
        for w in (wild4, wild5):
            got = self.marker(pub, w, "dollar-marker")
            self.assertEqual([p.topic for p in got if p.topic.startswith("$")], [])

    def test_resubscribe_replaces(self):
        """An identical filter replaces the subscription: one copy at the new QoS [MQTT-3.8.4-3] (both versions)."""
        for v in (4, 5):
            c = self.raw(v)
            c.subscribe("re/t", 0)
            c.subscribe("re/t", 2)
            pub = self.raw(v)
            got = self.marker(pub, c, "re/t")
            pub.publish("re/t", b"x", qos=2)
            p = c.recv_publish()
            self.assertEqual((p.payload, p.qos), (b"x", 2))
            self.assertEqual([x.payload for x in self.marker(pub, c, "re/t")], [])


class Overlap(BrokerTest):

    def test_overlapping_v5_one_copy_all_ids(self):
        """Overlapping subscriptions: delivered at the highest QoS [MQTT-3.3.4-2], carrying every matching
        Subscription Identifier [MQTT-3.3.4-3] [MQTT-3.3.4-4] [MQTT-3.3.4-5]."""
        c = self.raw(5)
        c.subscribe("ov/+", 0, sub_id=1)
        c.subscribe("ov/#", 2, sub_id=2)
        c.subscribe("ov/x", 1)
        pub = self.raw(5)
        pub.publish("ov/x", b"x", qos=2)
        got = []
        p = c.recv_publish()
        got.append(p)
        # anything else for ov/x arrives before a marker on ov/x itself
        got += [q for q in self.marker(pub, c, "ov/x")]
        self.assertEqual(max(p.qos for p in got), 2, "the highest granted QoS applies")
        ids = sorted(i for p in got for i in p.props_all("subscription_id"))
        self.assertEqual(sorted(set(ids)), [1, 2], got)
        if len(got) == 1:
            self.assertEqual(ids, [1, 2])

    @mosquitto_deviation("2.0.11 sends one copy per overlapping subscription to v5 clients")
    def test_overlapping_single_copy(self):
        """midge sends one copy per client for overlapping subscriptions (issue #3), at the maximum QoS
        [MQTT-3.3.5-1] (3.1.1) [MQTT-3.3.4-2] [MQTT-3.3.4-4] (5.0)."""
        for v in (4, 5):
            c = self.raw(v)
            c.subscribe("ovs/+", 1, sub_id=5 if v == 5 else None)
            c.subscribe("ovs/#", 0, sub_id=6 if v == 5 else None)
            pub = self.raw(v)
            pub.publish("ovs/t", b"x", qos=1)
            got = [c.recv_publish()] + self.marker(pub, c, "ovs/t")
            self.assertEqual(len(got), 1, "v%d got %d copies" % (v, len(got)))
            self.assertEqual(got[0].qos, 1)
            if v == 5:
                self.assertEqual(sorted(got[0].props_all("subscription_id")), [5, 6])

    def test_subscription_identifier(self):
        """A PUBLISH carries the Subscription Identifier of the matching subscription; none when the
        subscription had none [MQTT-3.3.4-3] (3.8.2.1.2)."""
        a = self.raw(5)
        a.subscribe("sid/t", 1, sub_id=268435455)
        b = self.raw(5)
        b.subscribe("sid/t", 1)
        pub = self.raw(5)
        pub.publish("sid/t", b"x", qos=1)
        self.assertEqual(a.recv_publish().props_all("subscription_id"), [268435455])
        self.assertEqual(b.recv_publish().props_all("subscription_id"), [])


class Options(BrokerTest):

    def test_no_local(self):
        """No Local: own messages are not forwarded back, others' are [MQTT-3.8.3-3]."""
        c = self.raw(5, client_id="nl-client")
        c.subscribe("nl/t", opts=sub_opts(1, no_local=True))
        c.subscribe("nl/marker", 1)
        c.publish("nl/t", b"mine", qos=1)
        other = self.raw(5)
        other.publish("nl/t", b"theirs", qos=1)
        p = c.recv_publish()
        self.assertEqual(p.payload, b"theirs")
        c.publish("nl/marker", b"m", qos=1)
        self.assertEqual(c.recv_publish().topic, "nl/marker")

    @mosquitto_deviation("2.0.11 grants No Local on a shared subscription")
    def test_no_local_on_shared_is_protocol_error(self):
        """No Local on a Shared Subscription is a Protocol Error [MQTT-3.8.3-4]: DISCONNECT 0x82 (or a SUBACK failure)."""
        c = self.raw(5)
        pid = c.pid()
        c.send(subscribe_packet(pid, [("$share/g/nl", sub_opts(0, no_local=True))], version=5))
        got = c.wait_for(lambda p: p.type in (SUBACK, DISCONNECT), what="SUBACK or DISCONNECT")
        if got.type == SUBACK:
            self.assertGreaterEqual(got.codes[0], 0x80, got)
        else:
            self.assertEqual(got.rc, 0x82)

    def test_retain_as_published(self):
        """Retain As Published 1 keeps RETAIN on forwarded messages, 0 clears it [MQTT-3.3.1-12] [MQTT-3.3.1-13];
        3.1.1 subscribers get RETAIN 0 on live messages [MQTT-3.3.1-9 (3.1.1)]."""
        rap = self.raw(5)
        rap.subscribe("rap/t", opts=sub_opts(0, rap=True))
        norap = self.raw(5)
        norap.subscribe("rap/t", opts=sub_opts(0))
        v4 = self.raw(4)
        v4.subscribe("rap/t", 0)
        pub = self.raw(5)
        pub.publish("rap/t", b"r", retain=True, qos=1)
        self.assertTrue(rap.recv_publish().retain)
        self.assertFalse(norap.recv_publish().retain)
        self.assertFalse(v4.recv_publish().retain)
        pub.publish("rap/t", b"", retain=True, qos=1)


class Unsubscribe(BrokerTest):

    def _unsub(self, v):
        c = self.raw(v)
        c.subscribe([("un/a", 1), ("un/b", 1)])
        pub = self.raw(v)
        pid = c.pid()
        c.send(unsubscribe_packet(pid, ["un/a", "un/none"], version=v))
        ua = c.expect(UNSUBACK)
        self.assertEqual(ua.pid, pid)
        if v == 5:
            self.assertEqual(ua.codes, [0x00, 0x11], "v5 UNSUBACK: 0x00 removed, 0x11 no subscription existed")
        pub.publish("un/a", b"after", qos=1)
        got = self.marker(pub, c, "un/b")
        self.assertEqual(got, [], "nothing delivered for a removed subscription")

    def test_unsubscribe_v4(self):
        """UNSUBSCRIBE stops delivery; UNSUBACK with the same id even for a filter that was not subscribed
        [MQTT-3.10.4-1] [MQTT-3.10.4-2] [MQTT-3.10.4-4] [MQTT-3.10.4-5] [MQTT-3.10.4-6]."""
        self._unsub(4)

    def test_unsubscribe_v5(self):
        """UNSUBSCRIBE stops delivery; UNSUBACK 0x00 / 0x11 per filter in order
        [MQTT-3.10.4-1] [MQTT-3.10.4-2] [MQTT-3.10.4-4] [MQTT-3.10.4-5] [MQTT-3.11.3-1] [MQTT-3.11.3-2]."""
        self._unsub(5)

    def test_unsubscribe_wildcard_is_literal(self):
        """UNSUBSCRIBE compares filters character by character: 'us/+' does not remove 'us/x' [MQTT-3.10.4-1]."""
        c = self.raw(4)
        c.subscribe("us/x", 0)
        c.unsubscribe("us/+")
        pub = self.raw(4)
        pub.publish("us/x", b"still", qos=0)
        self.assertEqual(c.recv_publish().payload, b"still")


class Shared(BrokerTest):

    def _shared(self, versions):
        members = []
        for v in versions:
            m = self.raw(v)
            m.subscribe("$share/grp/sh/t", 1)
            members.append(m)
        other = self.raw(5)
        other.subscribe("$share/grp2/sh/#", 1)
        plain = self.raw(4)
        plain.subscribe("sh/t", 1)
        pub = self.raw(5)
        n = 30
        for i in range(n):
            pub.publish("sh/t", b"%d" % i, qos=1)
        self.assertEqual(len(plain.recv_publishes(n, timeout=5)), n, "a normal subscriber gets everything")
        self.assertEqual(len(other.recv_publishes(n, timeout=5)), n, "each group gets every message")
        counts = []
        seen = []
        for m in members:
            got = []
            try:
                while True:
                    got.append(m.recv_publish(timeout=0.3))
            except AssertionError:
                pass
            counts.append(len(got))
            seen += [p.payload for p in got]
        self.assertEqual(sorted(seen, key=int), [b"%d" % i for i in range(n)],
                         "each message to exactly one member of the group (counts %r)" % counts)
        self.assertTrue(all(c > 0 for c in counts), "spread over all members: %r" % counts)
        self.assertLessEqual(max(counts) - min(counts), 1, "round robin among members: %r" % counts)

    def test_shared_round_robin_v5(self):
        """$share/grp/t: each message to exactly one member, round robin; each group and each normal
        subscriber gets every message (4.8.2, [MQTT-4.8.2-1] [MQTT-4.8.2-2] [MQTT-4.8.2-3])."""
        self._shared((5, 5, 5))

    def test_shared_round_robin_mixed(self):
        """Shared subscription members on 3.1.1 and 5.0 connections (4.8.2)."""
        self._shared((4, 5, 4))

    def test_shared_granted_qos(self):
        """A shared subscription delivers at the member's granted QoS [MQTT-4.8.2-3]."""
        m = self.raw(5)
        m.subscribe("$share/q/shq/t", 0)
        pub = self.raw(5)
        pub.publish("shq/t", b"x", qos=2)
        self.assertEqual(m.recv_publish().qos, 0)

    def test_paho_shared(self):
        """paho v5 clients in one share group split messages (4.8.2)."""
        a = self.paho("sh-a", version=5)
        b = self.paho("sh-b", version=5)
        a.subscribe("$share/pg/ps/t", 1)
        b.subscribe("$share/pg/ps/t", 1)
        pub = self.paho("sh-p", version=5)
        for i in range(10):
            pub.publish("ps/t", b"%d" % i, qos=1)
        import time
        from midgetest import wait_until
        wait_until(lambda: a.messages.qsize() + b.messages.qsize() >= 10, what="10 shared messages")
        time.sleep(0.3)  # watch for extra copies
        na, nb = a.messages.qsize(), b.messages.qsize()
        self.assertEqual(na + nb, 10)
        self.assertTrue(na > 0 and nb > 0, (na, nb))
