// Job page: start a follow-up job from the finished one, then go to its page.
(function () {
  const form = document.getElementById("follow-up-form");
  if (!form) return;
  const status = document.getElementById("follow-up-status");
  const token = document.querySelector('meta[name="csrf-token"]').content;
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
