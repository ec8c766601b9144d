// /workers: one row per Ray node, refreshed every second.
"use strict";

RD.nav("workers");

function meter(used, total) {
  if (used === null || used === undefined) return '<span class="muted">n/a</span> / ' + RD.formatBytes(total);
  const pct = total ? Math.min(100, 100 * used / total) : 0;
  return '<span class="meter"><div style="width:' + pct.toFixed(1) + '%"></div></span>' +
    RD.formatBytes(used) + " / " + RD.formatBytes(total);
}

async function updateWorkers() {
  const reply = await RD.getJSON("/api/workers");
  document.getElementById("rows").innerHTML = reply.workers.map(function (w) {
    return "<tr><td>" + RD.escape(w.name) + "</td><td>" + RD.escape(w.address) + "</td><td>" + w.nthreads +
      "</td><td>" + RD.formatBytes(w.memory_limit) + "</td><td>" + meter(w.object_store_used, w.object_store_memory) +
      "</td><td>" + (w.running === null || w.running === undefined ? "n/a" : w.running) + "</td><td>" + w.finished +
      "</td><td>" + w.processes.length + "</td></tr>";
  }).join("");
  document.getElementById("info").textContent = reply.workers.length + " workers";
  document.body.dataset.workers = reply.workers.length;
}

RD.poll(updateWorkers, 1000);
