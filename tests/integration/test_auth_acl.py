"""auth-passwd and acl-json together (issues 5 and 6): usernames proven by a password
file written with midge_passwd decide which acl-json rules apply.

Reason codes: CONNACK 0x86 / 4 for a wrong password (MQTT 5 3.2.2.2, 3.1.1 3.2.2.3);
PUBACK 0x87 and SUBACK 0x87 / 0x80 for ACL denials [MQTT-3.3.5-2], [MQTT-3.9.3-1]."""

import os

from midgetest import Broker, only_midge, tmp_root
import test_acl_json as acl
import test_auth_passwd as pw


@only_midge("midge plugins")
@acl.need_build
@pw.need_build
class AuthAndAcl(acl.AclJsonTest):

    def setUp(self):
        self._clients = []
        d = os.path.join(tmp_root(), "authacl-%d" % id(self))
        os.makedirs(d, exist_ok=True)
        self.passwd = os.path.join(d, "passwd")
        for i, (user, password) in enumerate((("alice", "secret"), ("bob", "bobpw"))):
            rc, out, err = pw.midge_passwd(*(["-c"] if i == 0 else []), "-b", *pw.FAST,
                                           self.passwd, user, password)
            self.assertEqual(rc, 0, err)
        self.acl_dir = d
        self.acl_file = os.path.join(d, "acl.json")
        self.write_rules(acl.RULES)
        self.broker = Broker(["plugin " + pw.PLUGIN, "plugin_opt_password_file " + self.passwd,
                              "plugin " + acl.bundled("acl-json"),
                              "plugin_opt_acl_file " + self.acl_file])
        self.broker.start()
        self.port = self.broker.port

    def test_authenticated_user_gets_own_rules(self):
        alice = self.user("alice", "secret")
        self.assertEqual(alice.publish("anything/at/all", b"x", qos=1).rc, 0)
        alice.subscribe("secret/#", 1, expect_codes=[0x87])
        alice.subscribe("open/#", 1, expect_codes=[1])

    def test_wrong_password_never_reaches_the_acl(self):
        for version, rc in ((5, 0x86), (4, 4)):
            c = self.raw(version, connect=False)
            ca = c.connect("wrong-%d" % version, username="alice", password=b"nope",
                           expect_rc=None)
            self.assertEqual(ca.rc, rc)

    def test_group_rules_with_username_substitution(self):
        bob = self.user("bob", "bobpw")
        self.assertEqual(bob.publish("home/bob/light", b"on", qos=1).rc, 0)
        self.assertEqual(bob.publish("home/alice/light", b"on", qos=1).rc, 0x87)

    def test_anonymous_rules_for_clients_without_username(self):
        anon = self.raw(5)
        self.assertEqual(anon.publish("public/x", b"x", qos=1).rc, 0)
        self.assertEqual(anon.publish("home/bob/x", b"x", qos=1).rc, 0x87)
