// Results: each table's section folds under its heading (a button that says whether it is open);
// with many tables all but the first start folded. A link to a table, or to anything inside a
// folded one, opens it. Works for the results the live page loads when the run ends.
(function () {
  function setOpen(section, open) {
    const button = section.querySelector("h3 > button.toggle");
    const body = section.querySelector(".table-body");
    if (!button || !body) return;
    button.setAttribute("aria-expanded", String(open));
    body.hidden = !open;
  }
  function prepare(root) {
    root.querySelectorAll("section.table-group").forEach(section => {
      const h3 = section.querySelector("h3");
      const body = section.querySelector(".table-body");
      if (!h3 || !body || h3.querySelector("button.toggle")) return;
      const button = document.createElement("button");
      button.type = "button"; button.className = "toggle";
      button.setAttribute("aria-controls", body.id);
      button.append(...h3.childNodes);
      h3.appendChild(button);
      button.addEventListener("click", () => setOpen(section, button.getAttribute("aria-expanded") !== "true"));
      setOpen(section, section.dataset.collapsed !== "1");
    });
  }
  function reveal() {
    if (!location.hash) return;
    let target = null;
    try { target = document.querySelector(location.hash); } catch (err) { return; }
    const section = target && target.closest("section.table-group");
    if (section) { setOpen(section, true); target.scrollIntoView(); }
  }
  prepare(document);
  reveal();
  window.addEventListener("hashchange", reveal);
  document.addEventListener("click", e => {   // a link to a folded table opens it, even if the hash is unchanged
    const a = e.target.closest('a[href^="#table-"]');
    if (a) { const s = document.getElementById(a.getAttribute("href").slice(1)); if (s) setOpen(s.closest("section.table-group") || s, true); }
  });
  // The live page puts the results in when the run ends.
  const box = document.getElementById("results");
  if (box) new MutationObserver(() => prepare(box)).observe(box, { childList: true });
})();
