"""Administration services of the plugin ABI (stats, client_list, retained_list,
reload_request), driven through tests/plugins/admin_test.c."""

from midgetest import RawClient, only_midge, wait_until, TIMEOUT
from test_plugins import PluginTest, need_plugins, plug


@only_midge("midge plugin ABI")
@need_plugins
class Admin(PluginTest):

    def setUp(self):
        super().setUp()
        self.start_broker([plug("admin_test")])
        self.ctl = RawClient(self.port, 5)
        self._clients.append(self.ctl)
        self.ctl.connect("ctl")
        self.ctl.subscribe("admin/out/#", 0)

    def ask(self, cmd, payload=b""):
        self.ctl.publish("admin/ctl/" + cmd, payload, qos=0)
        return self.ctl.recv_publish(topic="admin/out/" + cmd).payload.decode()

    def test_stats_follow_traffic(self):
        before = dict(kv.split("=") for kv in self.ask("stats").split())
        c = RawClient(self.port, 5)
        self._clients.append(c)
        c.connect("stats-1", clean=False, props=[("session_expiry", 60)])
        c.subscribe("st/a", 1)
        for i in range(5):
            c.publish("st/a", b"x", qos=1)
        c.publish("st/ret", b"r", qos=1, retain=True)  # acknowledged: stored before we ask
        after = dict(kv.split("=") for kv in self.ask("stats").split())
        self.assertEqual(int(after["connected"]), int(before["connected"]) + 1)
        self.assertEqual(int(after["subscriptions"]), int(before["subscriptions"]) + 1)
        self.assertGreaterEqual(int(after["publish_received"]), int(before["publish_received"]) + 6)
        self.assertEqual(int(after["retained"]), int(before["retained"]) + 1)
        self.assertEqual(int(after["connects"]), int(before["connects"]) + 1)

    def test_client_list_covers_every_worker(self):
        ids = ["list-%d" % i for i in range(8)]  # spread over both workers by their hash
        for i, cid in enumerate(ids):
            c = RawClient(self.port, 5)
            self._clients.append(c)
            c.connect(cid, clean=False, props=[("session_expiry", 60)])
            if i % 2:
                c.subscribe("l/%d" % i, 0)
            if i == 0:
                c.disconnect()  # an offline persistent session is listed too
        listed = {e.split(":")[0]: e for e in self.ask("clients").split(",")}
        for i, cid in enumerate(ids):
            self.assertIn(cid, listed)
            _, connected, subs = listed[cid].split(":")
            self.assertEqual(connected, "0" if i == 0 else "1")
            self.assertEqual(subs, "1" if i % 2 else "0")
        self.assertIn("ctl", listed)

    def test_retained_list_by_filter(self):
        p = RawClient(self.port, 5)
        self._clients.append(p)
        p.connect("ret-pub")
        for t in ("r/a", "r/b/c", "other/x"):
            p.publish(t, b"v", qos=1, retain=True)
        got = self.ask("retained", b"r/#").split()
        self.assertEqual(got[0], "2")
        self.assertEqual(sorted(got[1:]), ["r/a", "r/b/c"])
        self.assertEqual(self.ask("retained", b"nothing/+").split(), ["0"])

    def test_reload_request_reloads(self):
        self.ctl.publish("admin/ctl/reload", b"", qos=0)
        self.broker.wait_log(lambda l: "configuration reloaded" in l, what="a reload in the log")
