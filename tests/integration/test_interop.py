"""mosquitto_pub / mosquitto_sub against the broker (3.1, 3.1.1, 5.0; QoS 0/1/2; retained)."""

import select
import subprocess
import time

from midgetest import BrokerTest, HOST


class Interop(BrokerTest):

    def sub_proc(self, *args):
        """Start mosquitto_sub -d and wait until it has its SUBACK. Returns the process."""
        p = self.track(subprocess.Popen(["stdbuf", "-oL", "-eL", "mosquitto_sub", "-h", HOST, "-p", str(self.port), "-d"] + list(args),
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        bufsize=0))  # unbuffered: select() must see every line
        self._lines = {p.pid: []}
        end = time.monotonic() + 5
        while time.monotonic() < end:
            r, _, _ = select.select([p.stdout], [], [], 0.2)
            if r:
                line = p.stdout.readline().decode(errors="replace")
                if not line:
                    break
                self._lines[p.pid].append(line)
                if "SUBACK" in line or line.startswith("Subscribed (mid"):
                    return p
        raise AssertionError("mosquitto_sub did not get a SUBACK: %r" % self._lines[p.pid])

    def sub_output(self, p, timeout=12):
        out, _ = p.communicate(timeout=timeout)
        lines = self._lines[p.pid] + out.decode(errors="replace").splitlines(True)
        return [l.rstrip("\n") for l in lines if not l.startswith("Client ") and "SUBACK" not in l
                and not l.startswith(" ") and not l.startswith("Subscribed (mid")]

    def pub(self, *args):
        r = subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(self.port)] + list(args),
                           capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 0, r)

    def _roundtrip(self, version, qos):
        s = self.sub_proc("-V", version, "-q", str(qos), "-t", "io/%s" % version, "-C", "1", "-W", "5", "-v")
        self.pub("-V", version, "-q", str(qos), "-t", "io/%s" % version, "-m", "hello %s q%d" % (version, qos))
        self.assertEqual(self.sub_output(s), ["io/%s hello %s q%d" % (version, version, qos)])
        self.assertEqual(s.returncode, 0)

    def test_mosquitto_clients_v311(self):
        """mosquitto_sub -V mqttv311 -C 1 -W 5 receives mosquitto_pub at QoS 0, 1, 2 [MQTT-3.3.4-1]."""
        for q in (0, 1, 2):
            self._roundtrip("mqttv311", q)

    def test_mosquitto_clients_v5(self):
        """mosquitto_sub -V mqttv5 receives mosquitto_pub at QoS 0, 1, 2 [MQTT-3.3.4-1]."""
        for q in (0, 1, 2):
            self._roundtrip("mqttv5", q)

    def test_mosquitto_clients_v31(self):
        """mosquitto_sub -V mqttv31 receives mosquitto_pub -V mqttv31."""
        self._roundtrip("mqttv31", 1)

    def test_mosquitto_retained(self):
        """mosquitto_pub -r leaves a retained message for a later mosquitto_sub; -r -n clears it
        [MQTT-3.3.1-5] [MQTT-3.3.1-6]."""
        self.pub("-t", "io/ret", "-m", "kept", "-r", "-q", "2")
        r = subprocess.run(["mosquitto_sub", "-h", HOST, "-p", str(self.port), "-t", "io/ret", "-C", "1", "-W", "5"],
                           capture_output=True, timeout=10)
        self.assertEqual(r.stdout.strip(), b"kept")
        self.pub("-t", "io/ret", "-r", "-n")
        r = subprocess.run(["mosquitto_sub", "-h", HOST, "-p", str(self.port), "-t", "io/ret", "-C", "1", "-W", "1"],
                           capture_output=True, timeout=10)
        self.assertEqual(r.stdout.strip(), b"", "retained message must be gone")

    def test_mosquitto_pub_v5_user_property(self):
        """mosquitto_pub -V mqttv5 -D publish user-property reaches a raw v5 subscriber [MQTT-3.3.2-17]."""
        s = self.raw(5)
        s.subscribe("io/up", 1)
        self.pub("-V", "mqttv5", "-q", "1", "-t", "io/up", "-m", "x", "-D", "publish", "user-property", "k", "v",
                 "-D", "publish", "content-type", "text/x")
        p = s.recv_publish()
        self.assertEqual(p.props_all("user_property"), [("k", "v")])
        self.assertEqual(p.prop("content_type"), "text/x")

    def test_paho_to_mosquitto_sub(self):
        """paho 3.1.1 publisher to mosquitto_sub v5 subscriber, QoS 2."""
        s = self.sub_proc("-V", "mqttv5", "-q", "2", "-t", "io/paho", "-C", "3", "-W", "10")
        c = self.paho("io-paho", version=4)
        for i in range(3):
            c.publish("io/paho", b"m%d" % i, qos=2)
        self.assertEqual(self.sub_output(s), ["m0", "m1", "m2"])
