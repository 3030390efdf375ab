// Results: sort a table preview by a column (click its header again to reverse). Delegated, so it
// also works for the results the live page loads when the run ends.
(function () {
  function value(cell, numeric) {
    const text = cell.textContent.trim();
    if (!numeric) return text.toLowerCase();
    const n = parseFloat(text);
    return Number.isNaN(n) ? -Infinity : n;
  }
  document.addEventListener("click", e => {
    const button = e.target.closest("table[data-sortable] th button.sort");
    if (!button) return;
    const th = button.closest("th");
    const table = th.closest("table");
    const index = Array.from(th.parentNode.children).indexOf(th);
    const numeric = th.dataset.numeric === "1";
    const ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("thead th").forEach(h => h.setAttribute("aria-sort", "none"));
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = value(a.cells[index], numeric), y = value(b.cells[index], numeric);
      return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
    });
    body.append(...rows);
  });
})();
