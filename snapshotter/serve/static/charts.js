// The page's charts: Plotly traces from the JSON block #charts-data (no inline script),
// hover text formatted on the server, zoomable, redrawn at the container's width.
(function () {
  const block = document.getElementById("charts-data");
  if (!block || typeof Plotly === "undefined") return;
  const charts = JSON.parse(block.textContent);
  const base = {
    margin: { l: 60, r: 10, t: 10, b: 40 }, autosize: true, height: 280,
    legend: { orientation: "h", y: -0.2 }, hovermode: "x unified",
    paper_bgcolor: "#fff", plot_bgcolor: "#fff",
  };
  for (const [id, chart] of Object.entries(charts)) {
    const div = document.getElementById(id);
    if (!div) continue;
    const traces = chart.traces.map((t) => Object.assign(
      { hovertemplate: "%{text}<extra>%{fullData.name}</extra>" }, t));
    const layout = Object.assign({}, base, chart.layout || {});
    if (traces.length && traces[0].type === "bar") layout.hovermode = "closest";
    Plotly.newPlot(div, traces, layout, { responsive: true, displaylogo: false });
  }
})();
