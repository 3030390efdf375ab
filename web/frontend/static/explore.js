// The table explorer and the plot viewer: share the view on screen, rows per page at once,
// and the viewer's keys (← → previous and next plot, F full size, Esc back to the job).
(function () {
  document.querySelectorAll(".js-only").forEach(e => { e.hidden = false; });
  document.querySelectorAll(".js-hide").forEach(e => { e.hidden = true; });
  const status = document.getElementById("action-status");
  function say(text, isError) {
    if (!status) return;
    status.className = "status-text" + (isError ? " error" : "");
    status.textContent = text;
  }

  // "Share this view": the job's share link (the one already given out, else a new one) plus
  // this page's path and query, so whoever gets it sees this very view.
  const share = document.getElementById("share-view");
  if (share) share.addEventListener("click", async () => {
    const token = document.querySelector('meta[name="csrf-token"]').content;
    const resp = await fetch(share.dataset.share, { method: "POST", body: JSON.stringify({ reuse: true }),
      headers: { "X-CSRF-Token": token, "Content-Type": "application/json" } });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) { say(data.error || `the server answered ${resp.status}`, true); return; }
    const suffix = location.pathname.replace(/^\/jobs\/[^/]+/, "") + location.search;
    const url = location.origin + "/shared/" + data.token + suffix;
    let box = document.getElementById("view-link");
    if (!box) {
      box = document.createElement("input");
      box.id = "view-link"; box.readOnly = true; box.className = "view-link";
      box.setAttribute("aria-label", "Link to this view");
      share.after(box);
    }
    box.value = url; box.select();
    try { await navigator.clipboard.writeText(url); say("Link copied: anyone with it sees this view (read-only) until you revoke the job's link."); }
    catch (err) { say("Anyone with this link sees this view (read-only) until you revoke the job's link."); }
  });

  const limit = document.getElementById("limit");
  if (limit) limit.addEventListener("change", () => limit.form.submit());

  const viewer = document.getElementById("viewer");
  if (!viewer) return;
  const frame = document.getElementById("plot-frame");
  const full = document.getElementById("full-size");
  function toggleFull() {
    const on = !frame.classList.contains("actual");
    frame.classList.toggle("actual", on);
    full.setAttribute("aria-pressed", String(on));
    full.textContent = on ? "Fit to the screen" : "Full size";
  }
  full.addEventListener("click", toggleFull);
  document.getElementById("plot").addEventListener("click", toggleFull);
  document.addEventListener("keydown", e => {
    if (e.altKey || e.ctrlKey || e.metaKey || /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName)) return;
    // A plot at full size in focus: the arrows scroll it.
    if (e.key.startsWith("Arrow") && e.target === frame && frame.classList.contains("actual")) return;
    const go = id => { const a = document.getElementById(id); if (a) { e.preventDefault(); location.href = a.href; } };
    if (e.key === "ArrowRight") go("next");
    else if (e.key === "ArrowLeft") go("previous");
    else if (e.key === "Escape") go("back");
    else if (e.key === "f" || e.key === "F") { e.preventDefault(); toggleFull(); }
  });
})();
