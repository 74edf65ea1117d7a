// Loads the http-admin dashboard in headless Chromium (playwright-core, Debian's
// /usr/bin/chromium) for tests/integration/test_http_admin.py.
// Usage: node http_admin_page.js URL SCREENSHOT TIMEOUT_MS
// Prints READY once the page has drawn its first sample (the test then starts
// publishing), then one JSON line: console errors, the samples, how many
// canvas pixels carry the "in" rate colour, and the cells of the bridge table.
const { chromium } = require("playwright-core");

(async () => {
    const [url, shot, timeoutMs] = process.argv.slice(2);
    const timeout = Number(timeoutMs) || 20000;
    const browser = await chromium.launch({
        executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
        args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    });
    const errors = [];
    try {
        // bypassCSP: the page's policy forbids eval, which waitForFunction uses.
        const page = await browser.newPage({ viewport: { width: 1000, height: 900 },
                                             bypassCSP: true });
        page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
        page.on("pageerror", (e) => errors.push(String(e)));
        page.on("requestfailed", (r) => errors.push("request failed: " + r.url()));
        await page.goto(url, { waitUntil: "load" });
        await page.waitForFunction(() => window.midgeDashboard &&
            window.midgeDashboard.samples.length >= 1, null, { timeout });
        process.stdout.write("READY\n");
        // Rising: the latest two samples show traffic the first one did not.
        await page.waitForFunction(() => {
            const s = window.midgeDashboard.samples;
            return s.length >= 3 && s[s.length - 1].rin > 100 && s[s.length - 2].rin > 100;
        }, null, { timeout });
        const result = await page.evaluate(() => {
            const c = document.getElementById("chart");
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) {
                // #1f77b4, allowing for anti-aliasing
                if (Math.abs(d[i] - 0x1f) < 40 && Math.abs(d[i + 1] - 0x77) < 40 &&
                    Math.abs(d[i + 2] - 0xb4) < 40 && d[i + 3] > 128) n++;
            }
            const rows = document.querySelectorAll("#bridges tbody tr");
            const bridgeRows = Array.from(rows).map(
                (tr) => Array.from(tr.cells).map((td) => td.textContent));
            return { samples: window.midgeDashboard.samples, chartPixels: n,
                     pageErrors: window.midgeDashboard.errors, bridgeRows };
        });
        await page.screenshot({ path: shot, fullPage: true });
        if (result.pageErrors) errors.push("page fetch errors: " + result.pageErrors);
        process.stdout.write(JSON.stringify({ errors, samples: result.samples,
                                              chartPixels: result.chartPixels,
                                              bridgeRows: result.bridgeRows }) + "\n");
    } finally {
        await browser.close();
    }
})().catch((e) => {
    process.stdout.write(JSON.stringify({ fatal: String(e) }) + "\n");
    process.exit(2);
});
