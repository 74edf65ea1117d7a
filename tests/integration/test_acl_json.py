"""acl-json (issue 6, docs/acl-json.md): topic access control from a JSON file,
with a real broker and real clients (raw MQTT, paho, mosquitto_pub/sub), MQTT
3.1.1 and 5.

Usernames come from plugins/example-auth (plugin_opt_users); the combination
with auth-passwd is to be added when that plugin lands. Reason codes: MQTT 5
PUBACK/PUBREC 0x87 Not authorized (3.4.2.1, 3.5.2.1), SUBACK 0x87 (3.9.3);
MQTT 3.1.1 SUBACK 0x80 Failure (3.9.3) and a denied PUBLISH is acknowledged
and dropped (3.1.1 has no way to say no); CONNACK 0x87 / return code 5 for a
denied will.
"""

import json
import os
import signal
import subprocess
import time
import unittest

from midgetest import (Broker, BrokerTest, PUBACK, PUBREC, SUBACK, HOST, QUIET, TIMEOUT,
                       only_midge, paho_props, tmp_root, wait_until, connect_packet)


def _builddir():
    for base in (os.environ.get("MIDGE_BUILDDIR"),
                 os.path.join(os.environ.get("MIDGE_SRCDIR", os.path.join(os.path.dirname(__file__), "..", "..")),
                              "build")):
        if base and os.path.exists(os.path.join(base, "plugins", "acl-json", ".libs", "acl-json.so")):
            return os.path.abspath(base)
    return None


BUILD = _builddir()
need_build = unittest.skipUnless(BUILD, "acl-json.so not found: set MIDGE_BUILDDIR to the build tree")


def bundled(name):
    return os.path.join(BUILD or "/nonexistent", "plugins", name, ".libs", name + ".so")


MIDGE_ACL = os.path.join(BUILD or "/nonexistent", "plugins", "acl-json", "midge_acl")

USERS = "alice:secret,bob:bobpw,+:plus,a/b:slash"

RULES = {
    "default": {"publish": "deny", "subscribe": "deny", "receive": "allow", "retain": "allow"},
    "anonymous": {"rules": [
        {"topic": "public/noretain/#", "deny": ["retain"]},
        {"topic": "public/#", "allow": ["publish", "subscribe"]},
        {"topic": "dev/%c/#", "allow": ["publish", "subscribe"]},
        {"topic": "will/ok/#", "allow": ["publish"]},
    ]},
    "groups": {
        "home": {"rules": [{"topic": "home/%u/#", "allow": ["publish", "subscribe"]}]},
    },
    "users": {
        "alice": {"rules": [
            {"topic": "secret/#", "deny": ["subscribe", "receive"]},
            {"topic": "#", "allow": ["publish", "subscribe"]},
        ]},
        "bob": {"groups": ["home"]},
        "+": {"groups": ["home"]},
        "a/b": {"groups": ["home"]},
    },
}


# The broker's line after a successful reload hook: by then the plugin has its new rules and
# standing answers given under the old ones have lapsed (the plugin's own "acl reloaded" line
# comes from inside the hook, before that).
RELOADED = "reload: plugin=acl-json reloaded"


@only_midge("acl-json is a midge plugin")
@need_build
class AclJsonTest(BrokerTest):
    """A broker with example-auth (usernames) and acl-json on RULES (plus EXTRA config lines)."""
    RULES = RULES
    EXTRA = []
    BEFORE = []  # config lines before acl-json: plugins earlier in the chain

    def setUp(self):
        self._clients = []
        self.acl_dir = os.path.join(tmp_root(), "acl-%d" % id(self))
        os.makedirs(self.acl_dir, exist_ok=True)
        self.acl_file = os.path.join(self.acl_dir, "acl.json")
        self.write_rules(self.RULES)
        self.broker = Broker(["plugin " + bundled("example-auth"), "plugin_opt_users " + USERS]
                             + self.BEFORE +
                             ["plugin " + bundled("acl-json"), "plugin_opt_acl_file " + self.acl_file]
                             + self.EXTRA)
        self.broker.start()
        self.port = self.broker.port

    def write_rules(self, rules):
        """Replaces the rule file atomically (rename), as an admin's editor or deploy tool would."""
        tmp = self.acl_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(rules if isinstance(rules, str) else json.dumps(rules, indent=1))
        os.rename(tmp, self.acl_file)

    def hup(self, what):
        """SIGHUP, then wait for the broker's log line about the reload."""
        before = self.broker.log_text().count(what)
        self.broker.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.broker.log_text().count(what) > before, what="log line %r" % what)

    def user(self, name, password, version=5, client_id=None):
        return self.raw(version, client_id=client_id, username=name, password=password.encode())

    def no_message(self, sub, pub, allowed_topic, denied):
        """After pub's denied publishes, a marker on allowed_topic is the first thing sub gets."""
        before = self.marker(pub, sub, allowed_topic)
        self.assertEqual([(p.topic, p.payload) for p in before], [],
                         "messages that the ACL should have stopped: %r" % denied)

    def denial_lines(self, needle):
        return [l for l in self.broker.log_text().splitlines() if "acl denied" in l and needle in l]


class Publish(AclJsonTest):

    def test_v5_denied_publish_gets_puback_0x87(self):
        """MQTT 5: a publish the rules refuse is answered with PUBACK 0x87 Not authorized
        [MQTT-3.4.2-1 reason codes] and never delivered; the client stays connected."""
        sub = self.user("alice", "secret", client_id="p5-sub")
        sub.subscribe("#", 1)
        pub = self.raw(5, client_id="p5-pub")
        ack = pub.publish("private/x", b"no", qos=1)
        self.assertEqual(ack.rc, 0x87)
        rec = pub.publish("private/y", b"no", qos=2)
        self.assertEqual((rec.type, rec.rc), (PUBREC, 0x87))
        self.assertEqual(pub.publish("public/x", b"yes", qos=1).rc, 0)
        got = sub.recv_publish()
        self.assertEqual((got.topic, got.payload), ("public/x", b"yes"))
        self.assertTrue(pub.is_open())

    def test_v3_denied_publish_is_dropped_silently(self):
        """MQTT 3.1.1 cannot refuse a PUBLISH: it is acknowledged normally and dropped
        (mosquitto_pub exits 0), and the subscriber (mosquitto_sub) gets only what was allowed."""
        sub = self.track(subprocess.Popen(
            ["mosquitto_sub", "-h", HOST, "-p", str(self.port), "-V", "mqttv311", "-u", "alice",
             "-P", "secret", "-i", "v3-sub", "-t", "#", "-q", "1", "-C", "1", "-v"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        self.broker.wait_log(lambda l: "v3-sub" in l and "subscribe" in l, what="v3-sub subscribed")
        for qos in ("0", "1", "2"):
            r = subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(self.port), "-V", "mqttv311",
                                "-i", "v3-pub", "-t", "private/q" + qos, "-m", "no", "-q", qos],
                               capture_output=True, timeout=TIMEOUT)
            self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(self.port), "-V", "mqttv311",
                            "-i", "v3-pub", "-t", "public/ok", "-m", "yes", "-q", "1"],
                           capture_output=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        out, _ = sub.communicate(timeout=TIMEOUT)
        self.assertEqual(out.decode().strip(), "public/ok yes")

    def test_v3_raw_denied_publish_acknowledged(self):
        """MQTT 3.1.1 QoS 1: the PUBACK comes as usual for a denied topic [MQTT-4.3.2-2]."""
        sub = self.user("alice", "secret", version=4, client_id="p3-sub")
        sub.subscribe("#", 1)
        pub = self.raw(4, client_id="p3-pub")
        ack = pub.publish("private/x", b"no", qos=1)
        self.assertEqual(ack.type, PUBACK)
        self.no_message(sub, pub, "public/m", "private/x")

    def test_denial_logged_once_with_rule(self):
        """Denials are logged once per client and topic at info level, with the deciding rule."""
        pub = self.raw(5, client_id="log-pub")
        for _ in range(20):
            self.assertEqual(pub.publish("private/log", b"x", qos=1).rc, 0x87)
        self.assertEqual(pub.publish("private/log2", b"x", qos=1).rc, 0x87)
        line = self.broker.wait_log(lambda l: "acl denied" in l and "topic=private/log2" in l)
        lines = self.denial_lines("topic=private/log ")
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("client=log-pub user=(anonymous) action=publish topic=private/log "
                      "rule=default.publish", lines[0])
        self.assertIn("client=log-pub", line)

    def test_client_id_substitution(self):
        """%c is the client's own id: dev/%c/# lets dev1 publish under dev/dev1 only."""
        pub = self.raw(5, client_id="dev1")
        self.assertEqual(pub.publish("dev/dev1/t", b"1", qos=1).rc, 0)
        self.assertEqual(pub.publish("dev/dev2/t", b"1", qos=1).rc, 0x87)

    def test_client_id_with_slash_cannot_widen(self):
        """A client id holding '/' never matches a level: x/y may not publish to dev/x/y/..."""
        pub = self.raw(5, client_id="x/y")
        self.assertEqual(pub.publish("dev/x/y/t", b"1", qos=1).rc, 0x87)
        self.assertEqual(pub.publish("dev/x/t", b"1", qos=1).rc, 0x87)

    def test_client_id_with_wildcards_cannot_widen(self):
        """Client ids '+' and '#' are names, not wildcards: dev/%c/# gives them no filter with
        '+' or '#' in that level, and no other client's topics."""
        for cid in ("+", "#"):
            c = self.raw(5, client_id=cid)
            self.assertEqual(c.subscribe([("dev/+/#", 0), ("dev/#", 0)]).codes, [0x87, 0x87])
            self.assertEqual(c.publish("dev/other/t", b"1", qos=1).rc, 0x87)

    def test_username_substitution(self):
        """%u is the username (example-auth logins): bob publishes to home/bob only."""
        bob = self.user("bob", "bobpw", client_id="bob-1")
        self.assertEqual(bob.publish("home/bob/t", b"1", qos=1).rc, 0)
        self.assertEqual(bob.publish("home/alice/t", b"1", qos=1).rc, 0x87)

    def test_username_wildcard_cannot_widen(self):
        """Users named '+' and 'a/b' get nothing from home/%u/#: no wildcard, no extra levels."""
        plus = self.user("+", "plus", client_id="plus-1")
        self.assertEqual(plus.publish("home/bob/t", b"1", qos=1).rc, 0x87)
        self.assertEqual(plus.subscribe("home/+/#", 0).codes, [0x87])
        slash = self.user("a/b", "slash", client_id="slash-1")
        self.assertEqual(slash.publish("home/a/b/t", b"1", qos=1).rc, 0x87)
        self.assertEqual(slash.subscribe("home/a/#", 0).codes, [0x87])


class Subscribe(AclJsonTest):

    def test_v5_suback_0x87_for_that_filter_only(self):
        """MQTT 5: SUBACK carries 0x87 for the refused filter and the granted QoS for the others
        [MQTT-3.9.3-1: one reason code per filter, in order]."""
        c = self.raw(5, client_id="s5")
        sa = c.subscribe([("public/#", 0), ("private/#", 1), ("public/a", 1)])
        self.assertEqual(sa.codes, [0, 0x87, 1])

    def test_v3_suback_0x80_for_that_filter_only(self):
        """MQTT 3.1.1: the refused filter gets 0x80 Failure, the others their QoS."""
        c = self.raw(4, client_id="s3")
        sa = c.subscribe([("private/#", 0), ("public/b", 1)])
        self.assertEqual(sa.codes, [0x80, 1])

    def test_covers_relation(self):
        """A subscribe rule must cover the whole filter: public/# covers public/+/x, not +/x or #."""
        c = self.raw(5, client_id="cov")
        sa = c.subscribe([("public/+/x", 0), ("+/x", 0), ("#", 0), ("public", 0)])
        self.assertEqual(sa.codes, [0, 0x87, 0x87, 0])

    def test_shared_subscription_checks_the_inner_filter(self):
        """$share/GROUP/FILTER is allowed or refused by FILTER."""
        c = self.raw(5, client_id="shr")
        sa = c.subscribe([("$share/g/public/#", 0), ("$share/g/private/#", 0)])
        self.assertEqual(sa.codes, [0, 0x87])

    def test_paho_v5_denied_subscribe(self):
        """paho (MQTT 5) sees reason code 0x87 for the refused filter."""
        c = self.paho("paho-s5", version=5)
        granted = c.subscribe([("public/p", 0), ("private/p", 0)])
        self.assertEqual([g.value if hasattr(g, "value") else g for g in granted], [0, 0x87])

    def test_mosquitto_sub_denied(self):
        """mosquitto_sub (3.1.1 and 5) is told its only subscription was refused and gives up
        at once instead of waiting for messages (-W would stop it after 30 s)."""
        for version in ("mqttv311", "mqttv5"):
            r = subprocess.run(["mosquitto_sub", "-h", HOST, "-p", str(self.port), "-V", version,
                                "-i", "msub-" + version, "-t", "private/#", "-C", "1", "-W", "30"],
                               capture_output=True, timeout=TIMEOUT)
            self.assertIn(b"All subscription requests were denied", r.stderr + r.stdout)


class Receive(AclJsonTest):

    def test_receive_filtered_per_message(self):
        """alice subscribes # (allowed) but a receive deny on secret/# stops those messages,
        live and retained, while everything else arrives."""
        retained = self.user("alice", "secret", client_id="r-retainer")
        self.assertEqual(retained.publish("secret/r", b"old", qos=1, retain=True).rc, 0)
        self.assertEqual(retained.publish("open/r", b"old", qos=1, retain=True).rc, 0)
        sub = self.user("alice", "secret", client_id="r-sub")
        self.assertEqual(sub.subscribe("#", 1).codes, [1])
        got = sub.recv_publish()
        self.assertEqual((got.topic, got.payload, got.retain), ("open/r", b"old", True))
        pub = self.user("alice", "secret", client_id="r-pub")
        self.assertEqual(pub.publish("secret/x", b"hidden", qos=1).rc, 0)
        self.assertEqual(pub.publish("open/x", b"seen", qos=1).rc, 0)
        got = sub.recv_publish()
        self.assertEqual((got.topic, got.payload), ("open/x", b"seen"))
        sub.no_publish(timeout=QUIET)

    def test_paho_v311_receive_filtering(self):
        """paho 3.1.1 subscriber: same filtering, the denied message never arrives."""
        sub = self.paho("r-paho", version=4, connect=False)
        sub.c.username_pw_set("alice", "secret")
        sub.connect()
        sub.subscribe("#", 0)
        pub = self.user("alice", "secret", client_id="r-paho-pub")
        pub.publish("secret/a", b"hidden", qos=1)
        pub.publish("open/a", b"seen", qos=1)
        m = sub.get()
        self.assertEqual((m.topic, m.payload), ("open/a", b"seen"))
        sub.none()


class Retain(AclJsonTest):

    def test_retain_denied_v5(self):
        """A retained publish where retain is denied gets 0x87 and sets nothing; the same
        topic without RETAIN is allowed."""
        c = self.raw(5, client_id="ret5")
        self.assertEqual(c.publish("public/noretain/a", b"r", qos=1, retain=True).rc, 0x87)
        self.assertEqual(c.publish("public/noretain/a", b"plain", qos=1).rc, 0)
        self.assertEqual(c.publish("public/ok", b"r", qos=1, retain=True).rc, 0)
        s = self.raw(5, client_id="ret5-sub")
        s.subscribe("public/#", 0)
        got = s.recv_publish()
        self.assertEqual((got.topic, got.payload, got.retain), ("public/ok", b"r", True))
        s.no_publish(timeout=QUIET)

    def test_retain_denied_v3(self):
        """MQTT 3.1.1: the retained publish is acknowledged and dropped; no retained message."""
        r = subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(self.port), "-V", "mqttv311",
                            "-i", "ret3", "-t", "public/noretain/b", "-m", "r", "-q", "1", "-r"],
                           capture_output=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        s = self.raw(4, client_id="ret3-sub")
        s.subscribe("public/noretain/#", 0)
        s.no_publish(timeout=QUIET)


class Will(AclJsonTest):

    def test_will_denied_as_publish(self):
        """A will on a topic the client may not publish to refuses the CONNECT
        (v5 0x87, v3 return code 5); an allowed will connects."""
        for version, rc in ((5, 0x87), (4, 5)):
            c = self.raw(version, connect=False)
            c.connect("will-%d" % version, will={"topic": "private/w", "payload": b"x"},
                      expect_rc=rc)
        ok = self.raw(5, connect=False)
        ok.connect("will-ok", will={"topic": "will/ok/a", "payload": b"x"}, expect_rc=0)

    def test_retained_will_needs_retain(self):
        """A retained will is checked as retain too: public/noretain refuses it, the same will
        without RETAIN is accepted."""
        c = self.raw(5, connect=False)
        c.connect("will-r", will={"topic": "public/noretain/w", "payload": b"x", "retain": True},
                  expect_rc=0x87)
        c = self.raw(5, connect=False)
        c.connect("will-nr", will={"topic": "public/noretain/w", "payload": b"x"}, expect_rc=0)


class Reload(AclJsonTest):

    def test_reload_changes_decisions(self):
        """SIGHUP re-reads the file: a topic allowed before is refused after, and back."""
        c = self.raw(5, client_id="rl-1")
        self.assertEqual(c.publish("public/a", b"1", qos=1).rc, 0)
        rules = json.loads(json.dumps(RULES))
        rules["anonymous"]["rules"] = [{"topic": "other/#", "allow": ["publish"]}]
        self.write_rules(rules)
        self.hup(RELOADED)
        self.assertEqual(c.publish("public/a", b"1", qos=1).rc, 0x87)
        self.assertEqual(c.publish("other/a", b"1", qos=1).rc, 0)

    def test_reload_bad_file_keeps_rules(self):
        """A bad file on SIGHUP: the previous rules stay, and the log names the place."""
        c = self.raw(5, client_id="rl-bad")
        self.write_rules('{\n "anonymous": {\n  "rules": [ {"topic": "x", "allow": ["publsh"]} ]\n }\n}\n')
        self.hup("refused its new options")
        log = self.broker.log_text()
        self.assertIn(self.acl_file + ": anonymous.rules[0].allow[0]: unknown action \"publsh\"", log)
        self.assertEqual(c.publish("public/a", b"1", qos=1).rc, 0)
        self.assertEqual(c.publish("private/a", b"1", qos=1).rc, 0x87)
        self.write_rules('{"anonymous": {"rules": [}')
        self.hup("refused its new options")
        self.assertIn(self.acl_file + ":1:26: unexpected token near '}'", self.broker.log_text())
        self.assertEqual(c.publish("public/a", b"1", qos=1).rc, 0)

    def test_reload_under_load(self):
        """SIGHUPs while a client publishes: every PUBACK is 0x00 or 0x87, never anything else,
        the broker stays up, and the last file decides once the reloads are done."""
        c = self.raw(5, client_id="rl-load")
        a = json.loads(json.dumps(RULES))
        b = json.loads(json.dumps(RULES))
        b["anonymous"]["rules"] = [{"topic": "other/#", "allow": ["publish"]}]
        codes = set()
        for i in range(20):
            self.write_rules(a if i % 2 else b)
            self.broker.proc.send_signal(signal.SIGHUP)
            for _ in range(10):
                codes.add(c.publish("public/a", b"x", qos=1).rc)
        # b in place, and a reload that read it (b has 4 rules, a 7) as the last one logged:
        # any reload still pending reads b too.
        self.write_rules(b)
        before = self.broker.log_text().count("acl reloaded")
        self.broker.proc.send_signal(signal.SIGHUP)

        def b_in_force():
            lines = [l for l in self.broker.log_text().splitlines() if "acl reloaded" in l]
            return len(lines) > before and lines[-1].endswith("rules=4")
        wait_until(b_in_force, what="a reload of the second file")
        self.assertTrue(codes <= {0, 0x87}, codes)
        self.assertEqual(c.publish("public/a", b"x", qos=1).rc, 0x87)
        self.assertEqual(c.publish("other/a", b"x", qos=1).rc, 0)
        self.assertTrue(self.broker.alive())

    def test_reload_removes_subscription(self):
        """After a reload, subscriptions the new rules no longer allow are removed, logged with the
        client and filter, and the subscriber stops receiving (the broker re-checks them)."""
        sub = self.raw(5, client_id="rl-sub")
        self.assertEqual(sub.subscribe("public/#", 0).codes, [0])
        pub = self.raw(5, client_id="rl-pub")
        pub.publish("public/a", b"before", qos=1)
        self.assertEqual(sub.recv_publish().payload, b"before")
        rules = json.loads(json.dumps(RULES))
        rules["anonymous"]["rules"] = [{"topic": "public/#", "allow": ["publish"]}]
        self.write_rules(rules)
        self.hup(RELOADED)
        self.broker.wait_log(lambda l: "rl-sub" in l and "public/#" in l and "acl denied" not in l
                             and ("remov" in l or "unsubscrib" in l or "revok" in l),
                             what="a log line naming rl-sub and the filter public/# it lost")
        self.assertEqual(pub.publish("public/a", b"after", qos=1).rc, 0)
        sub.no_publish(timeout=QUIET)


class Metrics(AclJsonTest):
    """The plugin's counters under $SYS (when the broker has plugin metrics)."""
    RULES = json.loads(json.dumps(RULES))
    RULES["users"]["alice"]["rules"].insert(0, {"topic": "$SYS/broker/plugin/#", "allow": ["subscribe"]})
    EXTRA = ["sys_interval 1"]

    def test_denied_and_reloads_counters(self):
        """$SYS/broker/plugin/acl-json/metric/denied counts denials, .../reloads reloads."""
        w = self.user("alice", "secret", client_id="m-watch")
        self.assertEqual(w.subscribe("$SYS/broker/plugin/acl-json/metric/#", 0).codes, [0])
        c = self.raw(5, client_id="m-pub")
        for _ in range(3):
            self.assertEqual(c.publish("private/m", b"x", qos=1).rc, 0x87)
        self.hup(RELOADED)
        want = {"$SYS/broker/plugin/acl-json/metric/denied": b"3",
                "$SYS/broker/plugin/acl-json/metric/reloads": b"1"}
        seen = {}
        end = time.monotonic() + 3 * TIMEOUT
        while any(seen.get(t) != v for t, v in want.items()):
            p = w.recv_publish(timeout=max(0.1, end - time.monotonic()))
            seen[p.topic] = p.payload
        self.assertEqual({t: seen[t] for t in want}, want)


class StandingReceive(AclJsonTest):
    """A client that no rule can deny a delivery is not asked about each one (a standing
    ALLOW for RECEIVE, plugin ABI 1.2); a reload that adds a receive deny takes it back."""
    RULES = json.loads(json.dumps(RULES))
    RULES["anonymous"]["rules"].insert(0, {"topic": "$SYS/broker/plugin/#", "allow": ["subscribe"]})
    EXTRA = ["sys_interval 1"]

    def acl_calls(self, watch, at_least=0):
        """The broker's count of acl hook calls ($SYS/broker/plugin/acl-json/acl/calls), once it
        is at least `at_least` and the next update adds at most 2 (nothing in flight but the
        checks of these $SYS messages themselves, if they are checked)."""
        last = None
        end = time.monotonic() + 3 * TIMEOUT
        while True:
            p = watch.recv_publish(timeout=max(0.1, end - time.monotonic()))
            if p.topic != "$SYS/broker/plugin/acl-json/acl/calls":
                continue
            v = int(p.payload)
            if v >= at_least and last is not None and v - last <= 2:
                return last
            last = v

    def assert_deliveries_unchecked(self, pub, sub, topic, watch_id, n=100):
        """n messages from pub to sub on topic cost about n acl hook calls (their PUBLISH
        checks), not 2n: the deliveries to sub are not checked one by one."""
        watch = self.raw(5, client_id=watch_id)
        self.assertEqual(watch.subscribe("$SYS/broker/plugin/acl-json/acl/calls", 0).codes, [0])
        self.assertEqual(pub.publish(topic, b"first", qos=1).rc, 0)
        self.assertEqual(sub.recv_publish().payload, b"first")
        before = self.acl_calls(watch)
        for i in range(n):
            self.assertEqual(pub.publish(topic, b"%d" % i, qos=1).rc, 0)
        self.assertEqual([p.payload for p in sub.recv_publishes(n)], [b"%d" % i for i in range(n)])
        calls = self.acl_calls(watch, at_least=before + n) - before
        self.assertLess(calls, n * 3 // 2, "deliveries were checked one by one: %d calls" % calls)

    def test_deliveries_not_checked_one_by_one(self):
        """bob's rules cannot deny him a delivery."""
        sub = self.user("bob", "bobpw", client_id="st-sub")
        self.assertEqual(sub.subscribe("home/bob/#", 1).codes, [1])
        pub = self.user("bob", "bobpw", client_id="st-pub")
        self.assert_deliveries_unchecked(pub, sub, "home/bob/t", "st-watch")

    def test_clean_session_until_it_subscribes_where_a_rule_denies(self):
        """alice (secret/# denies her receive) in a clean session subscribes open/#: her
        deliveries are not checked one by one; once she subscribes + /x, which covers
        secret/x, they are again, and secret/x stops reaching her."""
        sub = self.user("alice", "secret", client_id="st-alice")
        self.assertEqual(sub.subscribe("open/#", 1).codes, [1])
        pub = self.user("alice", "secret", client_id="st-alice-pub")
        self.assert_deliveries_unchecked(pub, sub, "open/t", "st-watch3")
        self.assertEqual(sub.subscribe("+/x", 1).codes, [1])
        self.assertEqual(pub.publish("secret/x", b"hidden", qos=1).rc, 0)
        self.assertEqual(pub.publish("open/x", b"seen", qos=1).rc, 0)
        got = sub.recv_publish()
        self.assertEqual((got.topic, got.payload), ("open/x", b"seen"))
        sub.no_publish(timeout=QUIET)

    def test_reload_adding_a_receive_deny_applies_at_once(self):
        """After a SIGHUP whose file denies bob receive on home/bob/secret/#, those messages stop
        reaching his existing subscription, while the others still arrive."""
        sub = self.user("bob", "bobpw", client_id="st-sub2")
        self.assertEqual(sub.subscribe("home/bob/#", 1).codes, [1])
        pub = self.user("bob", "bobpw", client_id="st-pub2")
        self.assertEqual(pub.publish("home/bob/secret/a", b"before", qos=1).rc, 0)
        self.assertEqual(sub.recv_publish().payload, b"before")
        rules = json.loads(json.dumps(self.RULES))
        rules["users"]["bob"]["rules"] = [{"topic": "home/bob/secret/#", "deny": ["receive"]}]
        self.write_rules(rules)
        self.hup(RELOADED)
        self.assertEqual(pub.publish("home/bob/secret/a", b"after", qos=1).rc, 0)
        self.assertEqual(pub.publish("home/bob/open", b"open", qos=1).rc, 0)
        got = sub.recv_publish()
        self.assertEqual((got.topic, got.payload), ("home/bob/open", b"open"))
        sub.no_publish(timeout=QUIET)


class StandingAfterAnEarlierPlugin(AclJsonTest):
    """A plugin before acl-json (tests/plugins/acl_async, allowing filters that start with
    "+/" at once) decides a SUBSCRIBE that acl-json never sees: the broker drops acl-json's
    standing RECEIVE answer for that client, so acl-json's receive rules still apply to
    deliveries under that filter (plugin ABI 1.2, client_acl_standing)."""
    BEFORE = ["plugin " + os.path.join(BUILD or "/nonexistent", "tests", "plugins", ".libs",
                                       "acl_async.so"),
              "plugin_opt_sync_prefix +/", "plugin_opt_delay_ms 0", "plugin_opt_verdict defer"]

    def test_subscription_decided_before_acl_json(self):
        sub = self.user("alice", "secret", client_id="st-chain")
        self.assertEqual(sub.subscribe("open/#", 1).codes, [1])   # acl-json: nothing denied there
        self.assertEqual(sub.subscribe("+/x", 1).codes, [1])      # acl_async allows: unseen
        pub = self.user("alice", "secret", client_id="st-chain-pub")
        self.assertEqual(pub.publish("secret/x", b"hidden", qos=1).rc, 0)
        self.assertEqual(pub.publish("open/x", b"seen", qos=1).rc, 0)
        got = sub.recv_publish()
        self.assertEqual((got.topic, got.payload), ("open/x", b"seen"))
        sub.no_publish(timeout=QUIET)


@only_midge("acl-json is a midge plugin")
@need_build
class StartUp(unittest.TestCase):

    def test_bad_file_refuses_to_start(self):
        """A bad rule file at start: the broker exits non-zero with the file's error place."""
        d = os.path.join(tmp_root(), "acl-start-%d" % id(self))
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "acl.json")
        with open(path, "w") as f:
            f.write('{"users": {"alice": {"groups": ["nope"]}}}')
        b = Broker(["plugin " + bundled("acl-json"), "plugin_opt_acl_file " + path])
        with self.assertRaises(AssertionError):
            b.start(timeout=3)
        b.stop()
        self.assertIn(path + ": users.alice.groups[0]: no group \"nope\" in \"groups\"", b.log_text())
        self.assertNotEqual(b.exit_code, 0)


@need_build
class Tool(unittest.TestCase):
    """midge_acl: the same loader and evaluator from the command line."""

    def setUp(self):
        d = os.path.join(tmp_root(), "acl-tool-%d" % id(self))
        os.makedirs(d, exist_ok=True)
        self.file = os.path.join(d, "acl.json")
        src = os.environ.get("MIDGE_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
        with open(os.path.join(src, "etc", "acl.json")) as f:
            self.example = f.read()
        with open(self.file, "w") as f:
            f.write(self.example)

    def run_tool(self, *args):
        return subprocess.run([MIDGE_ACL] + list(args), capture_output=True, timeout=TIMEOUT, text=True)

    def test_allow_prints_rule_exit_0(self):
        r = self.run_tool(self.file, "--user", "alice", "--client", "c1", "--action", "publish",
                          "--topic", "sensors/alice/t")
        self.assertEqual((r.returncode, r.stdout), (0, 'allow groups.sensors.rules[0] pattern "sensors/%u/#"\n'))

    def test_deny_prints_rule_exit_1(self):
        r = self.run_tool(self.file, "--user", "alice", "--client", "c1", "--action", "subscribe",
                          "--topic", "secret/#")
        self.assertEqual((r.returncode, r.stdout), (1, 'deny users.alice.rules[0] pattern "secret/#"\n'))

    def test_default_decides(self):
        r = self.run_tool(self.file, "--client", "c1", "--action", "publish", "--topic", "x")
        self.assertEqual((r.returncode, r.stdout), (1, "deny default.publish\n"))

    def test_check_ok_and_bad(self):
        r = self.run_tool("--check", self.file)
        self.assertEqual((r.returncode, r.stdout), (0, self.file + ": ok (4 entries, 5 rules)\n"))
        with open(self.file, "w") as f:
            f.write(self.example.replace('"publish"]', '"publsh"]', 1))
        r = self.run_tool("--check", self.file)
        self.assertEqual(r.returncode, 3)
        self.assertIn(self.file + ": groups.sensors.rules[0].allow[0]: unknown action \"publsh\"", r.stderr)

    def test_usage_errors(self):
        self.assertEqual(self.run_tool().returncode, 2)
        self.assertEqual(self.run_tool(self.file, "--action", "fly", "--topic", "a").returncode, 2)
        self.assertEqual(self.run_tool(self.file, "--action", "publish", "--topic", "a/#").returncode, 2)
        self.assertEqual(self.run_tool(self.file, "--bogus").returncode, 2)

    def test_help(self):
        r = self.run_tool("--help")
        self.assertEqual(r.returncode, 0)
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"):
            self.assertIn("\n" + section + "\n", "\n" + r.stdout)
