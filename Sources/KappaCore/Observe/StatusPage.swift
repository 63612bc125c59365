/// JobHost's page at `/`: one self-contained HTML file (no external scripts, fonts or styles),
/// polling the JSON API every two seconds: jobs and versions with their state and the serving
/// marker, a progress bar with ETA for replaying versions, what a version waits for and its
/// analysis after promotion (the bake's progress), each job's lag over the last minutes on a
/// time axis, its newest history entries, the hosts and what each runs, and for a job whose view
/// has `currency` and a price (`avg_rate` or `close`) by `minute`, the EUR price from the serving
/// view. Times are UTC, written as the CLI writes them.
enum StatusPage {
    static let html = #"""
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Kappa</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2330; background: #fafbfc; }
h1 { font-size: 20px; margin: 0 0 .2em; } h2 { font-size: 16px; margin: 1.2em 0 .4em; } h3 { font-size: 13px; margin: .8em 0 .2em; font-weight: 600; }
.muted { color: #6a7180; } .err { color: #b3261e; }
table { border-collapse: collapse; margin: .3em 0; } th, td { padding: .25em .8em; text-align: left; border-bottom: 1px solid #e3e6ea; }
th { font-weight: 600; color: #444b59; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.state { padding: 1px 6px; border-radius: 8px; background: #e8ebf0; }
.state.serving { background: #cdebd6; } .state.replaying { background: #fdeccb; } .state.failed { background: #f8d4d1; } .state.caughtUp { background: #d6e6fb; }
.bar { width: 160px; height: 10px; background: #e3e6ea; border-radius: 5px; overflow: hidden; display: inline-block; vertical-align: middle; }
.bar > div { height: 100%; background: #3b7ddd; }
svg { background: #fff; border: 1px solid #e3e6ea; } .job { margin-bottom: 1.5em; }
</style></head>
<body>
<h1>Kappa</h1>
<div id="hosts" class="muted">loading…</div>
<div id="jobs"></div>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
const api = (path) => fetch(path + (token ? (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : ""))
  .then(r => { if (!r.ok) throw new Error(path + ": HTTP " + r.status); return r.json(); });
// Job-controlled text: HTML-escaped, and its control characters shown as \uXXXX (no forged lines).
const esc = (s) => String(s).replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, c => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"))
  .replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
const fmt = (n) => n == null ? "-" : Math.round(n).toLocaleString("en");
const secs = (s) => s == null ? "-" : s < 90 ? s.toFixed(1) + " s" : s < 5400 ? (s / 60).toFixed(1) + " min" : (s / 3600).toFixed(1) + " h";
// Milliseconds since the epoch as the CLI writes them: 2026-11-25 18:20:01 (UTC).
const utc = (ms) => ms == null ? "-" : new Date(ms).toISOString().slice(0, 19).replace("T", " ");
const clock = (ms) => new Date(ms).toISOString().slice(11, 19);

// xLabel: how an x value is written on the time axis (nil: no axis).
function chart(series, width, height, label, xLabel) {
  const points = series.flatMap(s => s.points);
  if (points.length < 2) return '<div class="muted">' + esc(label) + ': no data yet</div>';
  const xs = points.map(p => p[0]), ys = points.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = x => 40 + (x1 === x0 ? 0 : (x - x0) / (x1 - x0) * (width - 50));
  const sy = y => height - 20 - (y1 === y0 ? 0 : (y - y0) / (y1 - y0) * (height - 56));
  const colors = ["#3b7ddd", "#d9822b", "#2e9e5b", "#9b51e0"];
  let svg = '<svg class="chart" data-points="' + points.length + '" width="' + width + '" height="' + height + '" role="img" aria-label="' + esc(label) + '">';
  svg += '<text x="4" y="14" font-size="11" fill="#6a7180">' + esc(label) + '</text>';
  svg += '<text x="4" y="' + (height - 22) + '" font-size="10" fill="#6a7180">' + esc(fmt(y0)) + '</text>';
  svg += '<text x="4" y="40" font-size="10" fill="#6a7180">' + esc(fmt(y1)) + '</text>';
  if (xLabel) {
    svg += '<line x1="40" y1="' + (height - 18) + '" x2="' + (width - 10) + '" y2="' + (height - 18) + '" stroke="#c9ced6"/>';
    for (let k = 0; k <= 4; k++) {
      const x = x0 + (x1 - x0) * k / 4;
      const label = xLabel(x), shift = k === 0 ? 0 : k === 4 ? label.length * 6 : label.length * 3;
      svg += '<text class="tick" x="' + (sx(x) - shift).toFixed(1) + '" y="' + (height - 4) + '" font-size="10" fill="#6a7180">' + esc(label) + '</text>';
    }
  }
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map((p, j) => (j ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1)).join(" ");
    svg += '<path d="' + d + '" fill="none" stroke="' + colors[i % colors.length] + '" stroke-width="1.5"/>';
    svg += '<text x="' + (width - 70) + '" y="' + (14 + 12 * i) + '" font-size="11" fill="' + colors[i % colors.length] + '">' + esc(s.name) + '</text>';
  });
  return svg + '</svg>';
}

// A version's analysis after promotion, as kappactl status writes it.
function bakeText(b) {
  if (!b) return "";
  const failed = b.failures + " failure" + (b.failures === 1 ? "" : "s");
  const text = b.outcome == null ? "baking " + b.evaluations + "/" + b.planned + ", " + failed + ", ends " + utc(b.endsAt) + " UTC"
    : b.outcome === "passed" ? "analysis passed, " + failed : b.outcome === "rolledBack" ? "analysis failed (" + failed + "): rolled back" : "analysis failed (" + failed + ")";
  return ' <span class="bake muted">' + esc(text) + '</span>';
}
const waits = (unmet) => unmet && unmet.length ? ' <span class="waits muted">waits for: ' + esc(unmet.join("; ")) + '</span>' : "";

async function render() {
  const status = await api("/api/status");
  // Each host with what it runs (its leases): as kappactl status writes it.
  const hosts = status.hosts.map(h => {
    const mine = status.leases.filter(l => l.owner === h);
    const notes = [];
    if (mine.some(l => l.key.partition === -1 && l.key.job === "")) notes.push("controller");
    for (const l of mine) if (l.key.partition === -1 && l.key.job.startsWith("#mirror:")) notes.push("mirror of " + l.key.job.slice(8));
    const n = mine.filter(l => l.key.partition !== -1).length;
    if (n > 0) notes.push(n + " partition" + (n === 1 ? "" : "s"));
    return h + (notes.length ? " (" + notes.join(", ") + ")" : "");
  });
  document.getElementById("hosts").textContent = (hosts.length
    ? "JobHost: " + hosts.join(", ")
    : "no JobHost is alive" + (status.lastHeartbeat ? " (last heartbeat " + utc(status.lastHeartbeat) + " UTC); rates and ETAs unknown" : ""))
    + " · updated " + utc(Date.now()) + " UTC";
  // What the hosts keep failing at and retry (the object store down): as kappactl status says it.
  const problems = (status.problems || []).map(p => '<p class="err">' + esc(p.host + ": " + p.subject + " failing since " + utc(p.since)
    + " UTC" + (p.retryAt ? ", retrying at " + utc(p.retryAt) + " UTC" : "") + ": " + p.error) + '</p>').join("");
  let html = "";
  for (const job of status.jobs) {
    html += '<div class="job" data-job="' + esc(job.name) + '"><h2>' + esc(job.name) + ' <span class="muted">view ' + esc(job.view) + ' on topic ' + esc(job.topic) +
      ', serving ' + (job.serving == null ? "nothing yet" : "version " + job.serving) + '</span></h2>';
    html += '<table><tr><th>version</th><th>state</th><th>lag</th><th>progress</th><th>rate/s</th><th>ETA</th><th>since (UTC)</th><th>error</th></tr>';
    for (const v of job.versions) {
      const serving = job.serving === v.version;
      const share = v.total ? Math.min(1, v.processed / v.total) : 0;
      const progress = v.total != null ? '<span class="bar"><div style="width:' + (share * 100).toFixed(1) + '%"></div></span> ' + (share * 100).toFixed(1) + "%" : "";
      html += '<tr class="version" data-version="' + v.version + '" data-state="' + esc(v.state) + '"><td>' + (serving ? "★ " : "") + v.version + '</td>' +
        '<td><span class="state ' + esc(v.state) + '">' + esc(v.state) + '</span>' + bakeText(v.bake) + waits(v.unmet) + '</td>' +
        '<td class="num">' + fmt(v.lag) + '</td><td>' + progress + '</td><td class="num">' + fmt(v.rate) + '</td>' +
        '<td class="num">' + (v.state === "replaying" ? secs(v.etaSeconds) : "-") + '</td><td>' + utc(v.since) + '</td><td class="err">' + esc(v.error || "") + '</td></tr>';
    }
    html += '</table>' + (job.logError ? '<p class="err">lag unknown: ' + esc(job.logError) + '</p>' : '') + (job.decisionError ? '<p class="err">decisions failing: ' + esc(job.decisionError) + '</p>' : '') + '<div id="lag-' + esc(job.name) + '"></div><div id="price-' + esc(job.name) + '"></div><div id="history-' + esc(job.name) + '"></div></div>';
  }
  document.getElementById("jobs").innerHTML = problems + (status.jobs.length ? html : '<p class="muted">no jobs; deploy one with kappactl deploy -f MANIFEST</p>');
  for (const job of status.jobs) {
    const lag = await api("/api/jobs/" + encodeURIComponent(job.name) + "/lag");
    document.getElementById("lag-" + job.name).innerHTML = chart(lag.versions.map(v => ({
      name: "v" + v.version, points: v.at.map((t, i) => [t, v.lag[i]])})), 640, 170, "lag (records), last minutes, UTC", clock);
    const history = await api("/api/jobs/" + encodeURIComponent(job.name) + "/history?limit=8");
    let hist = '<h3 class="muted">history (newest 8)</h3><table class="history"><tr><th>time (UTC)</th><th>version</th><th>from</th><th>to</th><th>reason</th><th>by</th></tr>';
    for (const e of history.history.slice().reverse()) {
      hist += '<tr class="entry"><td>' + utc(e.at) + '</td><td class="num">' + e.version + '</td><td>' + esc(e.from || "-") + '</td><td>' + esc(e.to) +
        '</td><td>' + esc(e.reason) + '</td><td>' + esc(e.actor) + '</td></tr>';
    }
    document.getElementById("history-" + job.name).innerHTML = hist + '</table>';
    if (job.serving == null) continue;
    const rows = await api("/api/jobs/" + encodeURIComponent(job.name) + "/rows?limit=10000");
    const c = rows.columns, price = c.includes("avg_rate") ? "avg_rate" : c.includes("close") ? "close" : null;
    if (!c.includes("currency") || !c.includes("minute") || price == null) continue;
    const eur = rows.rows.filter(r => r.currency === "EUR").map(r => [r.minute, r[price]]).sort((a, b) => a[0] - b[0]);
    document.getElementById("price-" + job.name).innerHTML = chart([{name: "EUR", points: eur}], 640, 210, "EUR price from the serving view " + job.view + ", per minute, UTC",
      m => utc(m * 60000).slice(5, 16));
  }
}

async function loop() {
  try { await render(); } catch (e) { document.getElementById("hosts").innerHTML = '<span class="err">' + esc(e.message) + '</span>'; }
  setTimeout(loop, 2000);
}
loop();
</script>
</body></html>
"""#
}
