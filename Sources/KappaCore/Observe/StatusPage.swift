/// JobHost's page at `/`: one self-contained HTML file (no external scripts, fonts or styles),
/// polling the JSON API every two seconds: jobs and versions with their state and the serving
/// marker, a progress bar with ETA for replaying versions, each job's lag over the last minutes,
/// and for a job whose view has `currency` and a price (`avg_rate` or `close`) by `minute`, the
/// EUR price from the serving view.
enum StatusPage {
    static let html = #"""
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Kappa</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2330; background: #fafbfc; }
h1 { font-size: 20px; margin: 0 0 .2em; } h2 { font-size: 16px; margin: 1.2em 0 .4em; }
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

function chart(series, width, height, label) {
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
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map((p, j) => (j ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1)).join(" ");
    svg += '<path d="' + d + '" fill="none" stroke="' + colors[i % colors.length] + '" stroke-width="1.5"/>';
    svg += '<text x="' + (width - 70) + '" y="' + (14 + 12 * i) + '" font-size="11" fill="' + colors[i % colors.length] + '">' + esc(s.name) + '</text>';
  });
  return svg + '</svg>';
}

async function render() {
  const status = await api("/api/status");
  document.getElementById("hosts").textContent = status.hosts.length
    ? "JobHost: " + status.hosts.join(", ") + " · updated " + new Date().toLocaleTimeString()
    : "no JobHost is alive";
  let html = "";
  for (const job of status.jobs) {
    html += '<div class="job" data-job="' + esc(job.name) + '"><h2>' + esc(job.name) + ' <span class="muted">view ' + esc(job.view) + ' on topic ' + esc(job.topic) +
      ', serving ' + (job.serving == null ? "nothing yet" : "version " + job.serving) + '</span></h2>';
    html += '<table><tr><th>version</th><th>state</th><th>lag</th><th>progress</th><th>rate/s</th><th>ETA</th><th>error</th></tr>';
    for (const v of job.versions) {
      const serving = job.serving === v.version;
      const share = v.total ? Math.min(1, v.processed / v.total) : 0;
      const progress = v.total != null ? '<span class="bar"><div style="width:' + (share * 100).toFixed(1) + '%"></div></span> ' + (share * 100).toFixed(1) + "%" : "";
      html += '<tr class="version" data-version="' + v.version + '" data-state="' + esc(v.state) + '"><td>' + (serving ? "★ " : "") + v.version + '</td>' +
        '<td><span class="state ' + esc(v.state) + '">' + esc(v.state) + '</span></td>' +
        '<td class="num">' + fmt(v.lag) + '</td><td>' + progress + '</td><td class="num">' + fmt(v.rate) + '</td>' +
        '<td class="num">' + (v.state === "replaying" ? secs(v.etaSeconds) : "-") + '</td><td class="err">' + esc(v.error || "") + '</td></tr>';
    }
    html += '</table>' + (job.logError ? '<p class="err">lag unknown: ' + esc(job.logError) + '</p>' : '') + (job.decisionError ? '<p class="err">decisions failing: ' + esc(job.decisionError) + '</p>' : '') + '<div id="lag-' + esc(job.name) + '"></div><div id="price-' + esc(job.name) + '"></div></div>';
  }
  document.getElementById("jobs").innerHTML = status.jobs.length ? html : '<p class="muted">no jobs; deploy one with kappactl deploy -f MANIFEST</p>';
  for (const job of status.jobs) {
    const lag = await api("/api/jobs/" + encodeURIComponent(job.name) + "/lag");
    document.getElementById("lag-" + job.name).innerHTML = chart(lag.versions.map(v => ({
      name: "v" + v.version, points: v.at.map((t, i) => [t, v.lag[i]])})), 640, 160, "lag (records), last minutes");
    if (job.serving == null) continue;
    const rows = await api("/api/jobs/" + encodeURIComponent(job.name) + "/rows?limit=10000");
    const c = rows.columns, price = c.includes("avg_rate") ? "avg_rate" : c.includes("close") ? "close" : null;
    if (!c.includes("currency") || !c.includes("minute") || price == null) continue;
    const eur = rows.rows.filter(r => r.currency === "EUR").map(r => [r.minute, r[price]]).sort((a, b) => a[0] - b[0]);
    document.getElementById("price-" + job.name).innerHTML = chart([{name: "EUR", points: eur}], 640, 200, "EUR price from the serving view " + job.view + ", per minute");
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
