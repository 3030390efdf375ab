// Job page: continue a finished job with a new instruction (a follow-up job), then go to its page.
(function () {
  const form = document.getElementById("follow-up-form");
  const open = document.getElementById("follow-up-open");
  if (!form || !open) return;
  const job = document.getElementById("job");
  const status = document.getElementById("follow-up-status");
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const active = () => ["queued", "running"].includes(job.dataset.status);
  // Offered once the job has ended (job.js updates data-status live).
  const offer = () => { open.hidden = active(); };
  offer();
  new MutationObserver(offer).observe(job, { attributes: true, attributeFilter: ["data-status"] });
  open.addEventListener("click", () => { form.hidden = false; form.querySelector("textarea").focus(); });
  document.getElementById("follow-up-cancel").addEventListener("click", () => { form.hidden = true; });
  form.addEventListener("submit", async e => {
    e.preventDefault();
    status.className = "status-text"; status.textContent = "starting…";
    try {
      const resp = await fetch(form.dataset.api, { method: "POST", body: new FormData(form),
                                                   headers: { "X-CSRF-Token": token } });
      const data = await resp.json().catch(() => ({ error: `server answered ${resp.status}` }));
      if (!resp.ok) throw new Error(data.error || `server answered ${resp.status}`);
      window.location.href = data.urls.page;
    } catch (err) {
      status.className = "status-text error"; status.textContent = err.message;
    }
  });
})();
