"""Labeled plugin metrics (plugin ABI 1.2: api->metric_new_labeled, metric_free and the
label fields of struct midge_metric_info), driven through tests/plugins/labeled_metrics.c,
whose header comment says what it publishes: the series in $SYS under
$SYS/broker/plugin/INSTANCE/metric/NAME/LABEL_VALUE, in api->metric_list with their label and
next to the other series of their name, created and freed from a worker thread, and what
must be refused."""

import unittest

from midgetest import only_midge, wait_until
from test_plugin_api import ApiTest
from test_plugins import need_plugins, plug

BASE = "$SYS/broker/plugin/labeled/metric/"


@only_midge("plugin ABI")
@need_plugins
class LabeledMetrics(ApiTest):
    CONFIG = [plug("labeled_metrics"), "sys_interval 1"]

    def ctl(self, cmd, payload=b""):
        self.raw(4).publish("lm/ctl/" + cmd, payload, qos=1)

    def listing(self):
        w = self.watch("lm/out/list")
        self.ctl("list")
        text = self.next_on(w, "lm/out/list").payload.decode()
        w.disconnect()
        return text.splitlines()

    def test_refusals_logged(self):
        """A second kind, a duplicate value, the exporter's own label name, a plain metric's name
        and an empty value are refused; metric_free of a plain metric is a logged plugin bug."""
        self.wait_log("labeled: refused kind=NULL dup=NULL instance=NULL plain=NULL "
                      "badvalue=NULL")
        self.wait_log("plugin bug plugin=labeled: metric_free of plain made by metric_new")
        self.assertIn("plain - 3", self.listing())

    def test_series_in_sys(self):
        """Each series is its own $SYS topic, NAME/LABEL_VALUE (a histogram's parts below it);
        '/' in a value is written '_' so the topic keeps its levels."""
        w = self.watch(BASE + "#")
        self.ctl("set", b"a 5")
        self.ctl("observe", b"3")
        wn = self.watch("lm/out/new")
        self.ctl("new", b"x/y")
        self.assertEqual(self.next_on(wn, "lm/out/new").payload, b"ok")
        self.sys_values(w, {BASE + "jobs/a": "5", BASE + "jobs/b": "0",
                            BASE + "jobs/x_y": "0", BASE + "lat/a/count": "1",
                            BASE + "lat/a/sum": "3", BASE + "plain": "3"})

    def test_metric_list_labels_and_order(self):
        """metric_list gives label name and value; the series of one name come together even
        when one is added later (from a worker thread); a value that exists is refused."""
        self.ctl("set", b"b 7")
        wn = self.watch("lm/out/new")
        self.ctl("new", b"c")
        self.assertEqual(self.next_on(wn, "lm/out/new").payload, b"ok")
        self.ctl("new", b"c")
        self.assertEqual(self.next_on(wn, "lm/out/new").payload, b"NULL")
        lines = wait_until(lambda: (lambda l: l if "jobs queue=b 7" in l else None)(
            self.listing()), what="jobs{queue=b} = 7 in metric_list")
        names = [l.split()[0] for l in lines]
        self.assertEqual(names, ["plain", "jobs", "jobs", "jobs", "lat"], lines)
        self.assertEqual(lines[1:4], ["jobs queue=a 0", "jobs queue=b 7", "jobs queue=c 0"])
        self.assertEqual(lines[4], "lat queue=a 0")

    def test_free_drops_series(self):
        """metric_free: the series leaves metric_list at once and its retained $SYS topic is
        cleared (an empty retained message) at the next publication; the others stay."""
        bugs = self.broker.log_text().count("plugin bug")  # init's refusals
        w = self.watch(BASE + "jobs/+")
        self.sys_values(w, {BASE + "jobs/b": "0"})
        self.ctl("free", b"b")
        wait_until(lambda: not any(l.startswith("jobs queue=b") for l in self.listing()),
                   what="jobs{queue=b} gone from metric_list")
        self.sys_values(w, {BASE + "jobs/b": ""})
        self.assertIn("jobs queue=a 0", self.listing())
        # A new subscriber gets no retained jobs/b any more, but jobs/a.
        w2 = self.watch(BASE + "jobs/+")
        self.assertEqual(self.next_on(w2, BASE + "jobs/a").payload, b"0")
        self.assertEqual(self.broker.log_text().count("plugin bug"), bugs)


if __name__ == "__main__":
    unittest.main()
