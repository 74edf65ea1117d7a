// browser_cdp.js: opens a page in headless Chromium and reports its #log
// element, for tests/integration/test_ws_browser.py (issue 9).
//
//   node browser_cdp.js CHROMIUM PROFILE_DIR URL
//
// Prints "chromium PID" once the browser runs, then "log LINE" for every new
// line of the page's <pre id="log"> (polled through the DevTools protocol,
// with the `ws` package that MQTT.js depends on). Runs until stdin closes or
// SIGTERM, then stops the browser it started. NODE_PATH must hold MQTT.js's
// node_modules.
"use strict";
const { spawn } = require("child_process");
const WebSocket = require("ws");

const [chromium, profile, url] = process.argv.slice(2);
const browser = spawn(chromium, [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
    "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
    "--user-data-dir=" + profile, "about:blank",
], { stdio: ["ignore", "ignore", "pipe"] });
console.log("chromium " + browser.pid);

let done = false;
const finish = (code) => {
    if (done) { return; }
    done = true;
    try { browser.kill("SIGKILL"); } catch (e) { /* already gone */ }
    process.exit(code);
};
process.on("SIGTERM", () => finish(0));
process.stdin.on("end", () => finish(0));
process.stdin.resume();
browser.on("exit", (code) => { console.log("chromium exited " + code); finish(1); });

let errText = "";
browser.stderr.on("data", (d) => {
    errText += d.toString();
    const m = /DevTools listening on (ws:\/\/[^\s]+)/.exec(errText);
    if (m && !browser.devtools) {
        browser.devtools = m[1];
        drive(m[1]).catch((e) => { console.log("error " + e.message); finish(1); });
    }
});

// One CDP session on a new page target: navigate, then poll the log text.
async function drive(browserUrl) {
    const bws = new WebSocket(browserUrl);
    await new Promise((res, rej) => { bws.on("open", res); bws.on("error", rej); });
    let next = 1;
    const pending = new Map();
    bws.on("message", (raw) => {
        const m = JSON.parse(raw);
        if (m.id && pending.has(m.id)) { pending.get(m.id)(m); pending.delete(m.id); }
    });
    const call = (method, params, sessionId) => new Promise((res) => {
        const id = next++;
        pending.set(id, res);
        bws.send(JSON.stringify({ id, method, params: params || {}, sessionId }));
    });
    const t = await call("Target.createTarget", { url: "about:blank" });
    const a = await call("Target.attachToTarget", { targetId: t.result.targetId, flatten: true });
    const sid = a.result.sessionId;
    await call("Page.navigate", { url }, sid);
    let seen = 0;
    for (;;) {
        const r = await call("Runtime.evaluate", {
            expression: "(document.getElementById('log') || {}).textContent || ''",
            returnByValue: true,
        }, sid);
        const text = r.result && r.result.result ? String(r.result.result.value || "") : "";
        const lines = text.split("\n").filter((l) => l !== "");
        for (; seen < lines.length; seen++) { console.log("log " + lines[seen]); }
        await new Promise((res) => setTimeout(res, 50));
    }
}
