// Shared by every raydask dashboard page: navigation, fetching, colours, formatting.
"use strict";

const RD = {};

// Dask's graph palette for task states.
RD.stateColors = {
  waiting: "gray", queued: "yellow", processing: "green", memory: "red",
  released: "blue", erred: "black", cancelled: "orange",
};

// Viridis, as Dask colours the task stream by key prefix.
RD.palette = ["#440154", "#482475", "#414487", "#355f8d", "#2a788e", "#21918c",
              "#22a884", "#44bf70", "#7ad151", "#bddf26", "#fde725"];

// Key prefixes get palette colours in the order they are first seen (the server
// lists prefixes in submission order), spread so neighbours differ; Dask hashes
// instead, which often gives two prefixes the same colour.
RD.paletteOrder = [2, 7, 4, 9, 0, 5, 10, 3, 8, 1, 6];
RD.prefixColors = new Map();

RD.prefixColor = function (prefix) {
  if (!RD.prefixColors.has(prefix)) {
    const n = RD.prefixColors.size;
    RD.prefixColors.set(prefix, RD.palette[RD.paletteOrder[n % RD.paletteOrder.length]]);
  }
  return RD.prefixColors.get(prefix);
};

RD.formatBytes = function (n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "kiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(2) : n.toFixed(0)) + " " + units[i];
};

RD.formatSeconds = function (s) {
  if (s === null || s === undefined) return "";
  return s < 1 ? (s * 1000).toFixed(1) + " ms" : s.toFixed(2) + " s";
};

RD.escape = function (s) {
  return String(s).replace(/[&<>"']/g, function (c) {
    return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
  });
};

RD.checked = async function (url, response) {
  if (response.status === 403) {
    throw new Error(url + ": HTTP 403: this dashboard needs its token; open the link the client printed");
  }
  if (!response.ok) throw new Error(url + ": HTTP " + response.status);
  return response.json();
};

RD.getJSON = async function (url) {
  return RD.checked(url, await fetch(url, { cache: "no-store" }));
};

// The server's id for the log the page's cursors count in.  A page that outlives its
// client (a new client on the same port) sends the old id, and the server answers
// with the whole picture and `reset: true`; so does a cursor the server never issued.
RD.session = "";

RD.since = function (path, cursor) {
  return path + "?since=" + cursor + (RD.session ? "&session=" + encodeURIComponent(RD.session) : "");
};

RD.nav = function (active) {
  const nav = document.createElement("nav");
  nav.innerHTML = '<span class="brand">raydask</span>' +
    ["status", "workers", "graph"].map(function (p) {
      return '<a href="/' + p + '"' + (p === active ? ' class="active"' : "") + ">" +
        p.charAt(0).toUpperCase() + p.slice(1) + "</a>";
    }).join("") + '<span class="info" id="info"></span>';
  document.body.insertBefore(nav, document.body.firstChild);
};

// Run `step` now and again `interval` ms after each run finishes (no overlapping
// requests); the returned promise settles after the first run.
RD.poll = function (step, interval) {
  async function loop() {
    try {
      await step();
      document.getElementById("error").textContent = "";
    } catch (err) {
      document.getElementById("error").textContent = "dashboard cannot reach the client: " + err.message;
    }
    setTimeout(loop, interval);
  }
  return loop();
};

// No "Share chart" button: it would upload the task keys to Plotly Cloud (plotly.js 4 shows it by default).
RD.plotConfig = { displaylogo: false, responsive: true, showSendToCloud: false };
