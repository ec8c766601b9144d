// Ask for the first picture while the browser still parses Plotly (4.8 MB).  A file of
// its own, not an inline script: the Content-Security-Policy allows only the dashboard's files.
"use strict";
window.firstGraph = fetch("/api/graph?since=0", { cache: "no-store" });
