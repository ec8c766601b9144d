// /status: the task stream (one row per worker process), progress per key prefix,
// tasks running per worker.  Finished tasks arrive as deltas (`/api/tasks?since=`).
"use strict";

RD.nav("status");

// The stream keeps the most recent tasks only, as Dask's does, so redraws stay cheap.
const STREAM_LIMIT = 20000;
const stream = { cursor: 0, tasks: new Map(), transfers: new Map(), rows: new Map(), drawn: 0 };

function trim(map) {
  const extra = map.size - STREAM_LIMIT;
  if (extra <= 0) return;
  const it = map.keys();
  for (let i = 0; i < extra; i++) map.delete(it.next().value);
}

function rowOf(worker, pid) {
  const label = worker + " pid " + pid;
  if (!stream.rows.has(label)) stream.rows.set(label, null);
  return label;
}

function streamFigure() {
  // Row numbers sorted by worker, then process id, so a node's processes sit together.
  const labels = Array.from(stream.rows.keys()).sort();
  labels.forEach(function (l, i) { stream.rows.set(l, i); });
  const traces = new Map();  // colour -> trace, a bar per task drawn as a thick line
  function trace(name, color, width) {
    if (!traces.has(name)) {
      traces.set(name, { type: "scattergl", mode: "lines", name: name, x: [], y: [], text: [],
                         hoverinfo: "text", line: { color: color, width: width }, showlegend: false });
    }
    return traces.get(name);
  }
  const width = Math.max(3, Math.min(40, 360 / Math.max(labels.length, 1)));
  // very short tasks get a sliver of the time axis so that they stay visible (as in Dask)
  let first = Infinity, last = -Infinity;
  stream.tasks.forEach(function (t) { first = Math.min(first, t.start); last = Math.max(last, t.stop); });
  const sliver = Math.max(last - first, 0.001) * 0.002;
  stream.tasks.forEach(function (t) {
    const erred = t.state === "erred";
    const tr = erred ? trace("erred", "black", width) : trace(t.prefix, RD.prefixColor(t.prefix), width);
    const y = stream.rows.get(rowOf(t.worker, t.pid));
    const text = t.key + "<br>" + (erred ? "erred: " + t.error : t.type + ", " + RD.formatBytes(t.nbytes)) +
      "<br>" + RD.formatSeconds(t.stop - t.start) + " on " + t.worker + " pid " + t.pid;
    tr.x.push(t.start * 1000, Math.max(t.stop, t.start + sliver) * 1000, null);
    tr.y.push(y, y, null);
    tr.text.push(text, text, null);
  });
  stream.transfers.forEach(function (t) {
    const tr = trace("transfer", "rgba(220, 20, 20, 0.75)", width * 0.6);
    const y = stream.rows.get(rowOf(t.to_worker, t.pid));
    // what the server knows: the route (via the owner, inlined, or node to node) and what timed the bar
    const text = "transfer " + t.key + " → " + t.to_key + "<br>" + RD.formatBytes(t.nbytes) +
      " from " + t.from_worker + " to " + t.to_worker + "<br>" + RD.escape(t.via) + "<br>" +
      RD.formatSeconds(t.stop - t.start) + ", " + RD.escape(t.timed);
    // a transfer's window may be empty (inputs ready before submit): keep it visible
    const stop = Math.max(t.stop, t.start + sliver);
    tr.x.push(t.start * 1000, stop * 1000, null);
    tr.y.push(y, y, null);
    tr.text.push(text, text, null);
  });
  const layout = {
    margin: { l: 170, r: 10, t: 10, b: 40 }, hovermode: "closest", plot_bgcolor: "#fafafa",
    paper_bgcolor: "#fafafa",
    xaxis: { type: "date", showgrid: false, zeroline: false },
    yaxis: { tickvals: labels.map(function (_, i) { return i; }), ticktext: labels, autorange: "reversed",
             range: [labels.length - 0.5, -0.5], zeroline: false, gridcolor: "#e4e4e4" },
  };
  return { data: Array.from(traces.values()), layout: layout };
}

async function updateStream() {
  const reply = await RD.getJSON(RD.since("/api/tasks", stream.cursor));
  RD.session = reply.session;
  if (reply.reset) {  // the server did not know our cursor (a new client on this port): start over
    stream.tasks.clear();
    stream.transfers.clear();
    stream.rows.clear();
    RD.prefixColors.clear();
    stream.drawn = 0;
    stream.resets = (stream.resets || 0) + 1;
  }
  stream.cursor = reply.cursor;
  reply.tasks.forEach(function (t) {
    rowOf(t.worker, t.pid);
    stream.tasks.delete(t.key);  // re-insert: a changed task counts as recent
    stream.tasks.set(t.key, t);
  });
  reply.transfers.forEach(function (t) { rowOf(t.to_worker, t.pid); stream.transfers.set(t.key + ">" + t.to_key, t); });
  trim(stream.tasks);
  trim(stream.transfers);
  if (reply.tasks.length || reply.transfers.length || !stream.drawn) {
    const fig = streamFigure();
    await Plotly.react("stream", fig.data, fig.layout, RD.plotConfig);
    stream.drawn += 1;
  }
  document.getElementById("stream-info").textContent =
    stream.tasks.size + " tasks, " + stream.transfers.size + " transfers";
  document.body.dataset.tasks = stream.tasks.size;
  document.body.dataset.transfers = stream.transfers.size;
  document.body.dataset.resets = stream.resets || 0;
}

function renderProgress(reply) {
  const t = reply.totals;
  document.getElementById("progress-summary").textContent =
    "Progress -- total: " + t.total + ", waiting: " + t.waiting + ", processing: " + t.processing +
    ", in-memory: " + t.memory + ", released: " + t.released + ", erred: " + t.erred;
  const bars = reply.prefixes.map(function (p) {
    const pct = function (n) { return (100 * n / Math.max(p.total, 1)).toFixed(2) + "%"; };
    const done = p.done, erred = p.erred, processing = p.processing;
    return '<div class="bar" data-prefix="' + RD.escape(p.prefix) + '">' +
      '<div style="left:0;width:' + pct(done) + ';background:' + RD.prefixColor(p.prefix) + '"></div>' +
      '<div class="erred" style="left:' + pct(done) + ';width:' + pct(erred) + '"></div>' +
      '<div class="processing" style="left:' + pct(done + erred) + ';width:' + pct(processing) + '"></div>' +
      '<div class="label">' +
      RD.escape(p.prefix) + "</div>" +
      '<div class="count">' + done + " / " + p.total + (erred ? " (" + erred + " erred)" : "") + "</div></div>";
  });
  document.getElementById("bars").innerHTML = bars.join("");
}

async function updateSide() {
  const [progress, workers] = await Promise.all([RD.getJSON("/api/progress"), RD.getJSON("/api/workers")]);
  renderProgress(progress);
  const names = workers.workers.map(function (w) { return "worker " + w.name; });
  const common = { margin: { l: 60, r: 10, t: 5, b: 30 }, plot_bgcolor: "#fafafa", paper_bgcolor: "#fafafa",
                   yaxis: { type: "category", autorange: "reversed" }, bargap: 0.15 };
  await Plotly.react("running", [{
    type: "bar", orientation: "h", y: names, x: workers.workers.map(function (w) { return w.running || 0; }),
    marker: { color: "blue" }, hovertemplate: "%{y}: %{x} running<extra></extra>",
  }], Object.assign({ xaxis: { rangemode: "tozero" } }, common), RD.plotConfig);
  await Plotly.react("stored", [{
    type: "bar", orientation: "h", y: names,
    x: workers.workers.map(function (w) { return w.object_store_used || 0; }),
    marker: { color: "#3b518b" }, hovertemplate: "%{y}: %{x:.3s}B<extra></extra>",
  }], Object.assign({ xaxis: { rangemode: "tozero", ticksuffix: "B", tickformat: ".2s" } }, common), RD.plotConfig);
  document.getElementById("info").textContent = workers.workers.length + " workers";
}

// Progress first: it lists prefixes in submission order, which fixes their colours.
RD.poll(updateSide, 1000).then(function () { RD.poll(updateStream, 500); });
