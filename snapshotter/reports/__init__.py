"""Reading the history: report tables, exports, the chart, summaries."""
