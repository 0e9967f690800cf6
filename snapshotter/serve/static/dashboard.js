// Sortable tables: click (or Enter on) a header; numbers sort as numbers, empty cells last.
(function () {
  function sortBy(table, index, th) {
    const body = table.tBodies[0];
    const rows = Array.from(body.rows).filter((r) => r.cells.length > index);
    const ascending = th.getAttribute("aria-sort") !== "ascending";
    const key = (row) => row.cells[index].getAttribute("data-sort") || "";
    const numeric = rows.every((r) => key(r) === "" || !isNaN(Number(key(r))));
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === "" || y === "") return (x === "") - (y === "");
      const order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return ascending ? order : -order;
    });
    for (const other of th.parentNode.children) other.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    rows.forEach((r) => body.appendChild(r));
  }
  document.querySelectorAll("table.sortable").forEach((table) => {
    Array.from(table.tHead.rows[0].cells).forEach((th, index) => {
      th.addEventListener("click", () => sortBy(table, index, th));
      th.addEventListener("keydown", (e) => { if (e.key === "Enter") sortBy(table, index, th); });
    });
  });
})();
