// MQTT.js interop client for tests/integration/test_ws.py (issue 9).
// Usage: node mqttjs_client.js URL [CAFILE]
// Subscribes to "js/#" at QoS 2, publishes QoS 0, 1 and 2 messages and one of
// 256 kB (QoS 1), and prints one JSON line per message received:
// {"topic":..., "qos":..., "len":..., "sha":...}, then "done".
"use strict";
const fs = require("fs");
const crypto = require("crypto");
const mqtt = require("mqtt");

const url = process.argv[2];
const opts = { clientId: "mqttjs-" + process.pid, reconnectPeriod: 0, connectTimeout: 5000 };
if (process.argv[3]) {
    opts.ca = fs.readFileSync(process.argv[3]);
}
const big = crypto.randomBytes(256 * 1024);
const sends = [
    ["js/q0", Buffer.from("qos 0"), 0],
    ["js/q1", Buffer.from("qos 1"), 1],
    ["js/q2", Buffer.from("qos 2"), 2],
    ["js/big", big, 1],
];
const sha = (b) => crypto.createHash("sha256").update(b).digest("hex");
let got = 0;
const timer = setTimeout(() => { console.log("timeout"); process.exit(1); }, 10000);
const c = mqtt.connect(url, opts);
c.on("error", (e) => { console.log("error " + e.message); process.exit(1); });
c.on("message", (topic, payload, packet) => {
    console.log(JSON.stringify({ topic, qos: packet.qos, len: payload.length, sha: sha(payload) }));
    if (++got === sends.length) {
        clearTimeout(timer);
        c.end(false, () => { console.log("done"); process.exit(0); });
    }
});
c.on("connect", () => {
    c.subscribe("js/#", { qos: 2 }, (err) => {
        if (err) { console.log("error " + err.message); process.exit(1); }
        for (const [t, p, q] of sends) {
            c.publish(t, p, { qos: q });
        }
    });
});
console.log("big " + sha(big));
