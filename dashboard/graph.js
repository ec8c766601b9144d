// /graph: the evolving task graph.  Positions come from the server's incremental
// layered layout and never move; each poll brings only the nodes that changed and
// the edges of new nodes (`/api/graph?since=`).  Past the server's size limit the
// reply is one node per key prefix (view "prefix") and is redrawn whole.
"use strict";

RD.nav("graph");

const graph = { cursor: 0, view: null, nodes: new Map(), edgeX: [], edgeY: [], draws: 0 };

function nodeText(n) {
  if (graph.view === "prefix") {
    return n.key + ": " + n.count + " tasks<br>" +
      Object.entries(n.states).map(function (e) { return e[0] + " " + e[1]; }).join(", ");
  }
  return n.key + "<br>state: " + n.state + (n.worker ? "<br>worker: " + n.worker : "") +
    (n.duration !== undefined ? "<br>duration: " + RD.formatSeconds(n.duration) : "") +
    (n.error ? "<br>" + n.error : "");
}

function graphFigure() {
  const byState = new Map();
  Object.keys(RD.stateColors).forEach(function (s) {
    byState.set(s, { type: "scattergl", mode: graph.view === "prefix" ? "markers+text" : "markers", name: s,
                     x: [], y: [], text: [], hovertext: [], hoverinfo: "text", textposition: "top center",
                     marker: { color: RD.stateColors[s], symbol: "square", size: [],
                               line: { width: 0 } } });
  });
  const prefixView = graph.view === "prefix";
  const size = prefixView ? null : Math.max(4, Math.min(12, 900 / Math.sqrt(graph.nodes.size + 1)));
  graph.nodes.forEach(function (n) {
    const tr = byState.get(n.state) || byState.get("waiting");
    tr.x.push(n.x);
    tr.y.push(n.y);
    tr.hovertext.push(nodeText(n));
    tr.text.push(prefixView ? n.key + " (" + n.count + ")" : "");
    tr.marker.size.push(prefixView ? 10 + 4 * Math.log2(n.count + 1) : size);
  });
  const edges = { type: "scattergl", mode: "lines", x: graph.edgeX, y: graph.edgeY, hoverinfo: "skip",
                  line: { color: "#999", width: 0.7 }, showlegend: false, name: "edges" };
  const nodes = Array.from(byState.values()).filter(function (t) { return t.x.length; });
  return {
    data: [edges].concat(nodes),
    layout: {
      margin: { l: 10, r: 10, t: 10, b: 10 }, hovermode: "closest", plot_bgcolor: "#fafafa",
      paper_bgcolor: "#fafafa", uirevision: graph.view,
      xaxis: { visible: false }, yaxis: { visible: false, autorange: "reversed" },
      legend: { x: 1, xanchor: "right", y: 1, bgcolor: "rgba(255,255,255,0.8)" },
    },
  };
}

function addEdges(pairs) {
  pairs.forEach(function (pair) {
    const a = graph.nodes.get(pair[0]), b = graph.nodes.get(pair[1]);
    if (!a || !b) return;
    graph.edgeX.push(a.x, b.x, null);
    graph.edgeY.push(a.y, b.y, null);
  });
}

async function updateGraph() {
  const since = graph.view === "tasks" ? graph.cursor : 0;
  let reply;
  if (window.firstGraph) {  // started by graph-first.js before Plotly loaded
    const first = window.firstGraph;
    window.firstGraph = null;
    reply = await RD.checked("/api/graph", await first);
  } else {
    reply = await RD.getJSON(RD.since("/api/graph", since));
  }
  RD.session = reply.session;
  // a whole picture (a new view, the prefix view, or the server did not know our cursor): start over
  if (reply.view !== graph.view || reply.view === "prefix" || reply.reset) {
    graph.nodes.clear();
    graph.edgeX = [];
    graph.edgeY = [];
    graph.view = reply.view;
    if (reply.reset) graph.resets = (graph.resets || 0) + 1;
  }
  const changed = reply.nodes.length || reply.edges.length || !graph.draws || reply.view === "prefix" ||
    reply.reset;
  reply.nodes.forEach(function (n) { graph.nodes.set(n.key, n); });
  addEdges(reply.edges);
  graph.cursor = reply.cursor;
  if (changed) {
    const t0 = performance.now();
    const fig = graphFigure();
    await Plotly.react("graph", fig.data, fig.layout, RD.plotConfig);
    graph.draws += 1;
    window.lastDrawMs = performance.now() - t0;
  }
  document.getElementById("graph-info").textContent = reply.view === "prefix"
    ? reply.total + " tasks, shown by key prefix"
    : graph.nodes.size + " tasks, " + graph.edgeX.length / 3 + " dependencies";
  document.body.dataset.nodes = graph.nodes.size;
  document.body.dataset.view = graph.view;
  document.body.dataset.resets = graph.resets || 0;
}

RD.poll(updateGraph, 500);
