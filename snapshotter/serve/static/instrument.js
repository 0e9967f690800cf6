// The instrument page's chart: value per account (left axis) and price (right axis), from
// the JSON block the page carries (the CSP allows no inline script). Axes in lakh/crore,
// hover values Indian-style (both computed by the server).
(function () {
  const holder = document.getElementById("instrument-chart");
  const source = document.getElementById("instrument-chart-data");
  if (!holder || !source || !window.Plotly) return;
  const data = JSON.parse(source.textContent);
  const traces = data.traces.map((t) => ({
    type: "scatter", mode: t.x.length > 1 ? "lines" : "lines+markers", name: t.name,
    x: t.x, y: t.y, text: t.text, yaxis: t.axis,
    hovertemplate: "%{x}: %{text}<extra>" + t.name + "</extra>",
    line: t.axis === "y2" ? { dash: "dot" } : {},
  }));
  const axis = (ticks, extra) => Object.assign({
    tickvals: ticks.tickvals, ticktext: ticks.ticktext, range: ticks.range, automargin: true,
  }, extra);
  const layout = {
    margin: { l: 10, r: 10, t: 10, b: 30 }, height: 320, autosize: true,
    legend: { orientation: "h", y: -0.15 },
    xaxis: { type: "date", automargin: true },
    yaxis: axis(data.value_axis, { title: { text: "value" } }),
    yaxis2: axis(data.price_axis, { title: { text: "price" }, overlaying: "y", side: "right", showgrid: false }),
  };
  Plotly.newPlot(holder, traces, layout, { responsive: true, displaylogo: false });
})();
