// The owner's actions on a job page: rename, run again, share a read-only link, delete.
(function () {
  const actions = document.getElementById("actions");
  if (!actions) return;
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const status = document.getElementById("action-status");
  const nameEl = document.getElementById("job-name");
  const renameForm = document.getElementById("rename-form");
  const renameInput = document.getElementById("rename-input");
  const shareBox = document.getElementById("share-box");
  const shareUrl = document.getElementById("share-url");

  function say(text, isError) {
    status.className = "status-text" + (isError ? " error" : "");
    status.textContent = text;
  }
  async function call(method, url, body) {
    const headers = { "X-CSRF-Token": token };
    if (body) headers["Content-Type"] = "application/json";
    const resp = await fetch(url, { method, headers, body: body ? JSON.stringify(body) : undefined });
    const data = resp.status === 204 ? {} : await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.error || `the server answered ${resp.status}`);
    return data;
  }
  function guard(fn) {
    return async (...args) => { try { await fn(...args); } catch (err) { say(err.message, true); } };
  }

  document.getElementById("rename").addEventListener("click", () => {
    renameForm.hidden = false; renameInput.value = nameEl.textContent; renameInput.select(); renameInput.focus();
  });
  document.getElementById("rename-cancel").addEventListener("click", () => { renameForm.hidden = true; });
  renameForm.addEventListener("submit", guard(async e => {
    e.preventDefault();
    const data = await call("PATCH", actions.dataset.job, { name: renameInput.value });
    nameEl.textContent = data.name;
    document.title = data.name + " · Dataset processing";
    renameForm.hidden = true;
    say("Renamed.");
  }));

  document.getElementById("rerun").addEventListener("click", guard(async () => {
    say("Starting a new job with the same files…");
    const data = await call("POST", actions.dataset.rerun);
    window.location.href = data.urls.page;
  }));

  // The job's read-only link: the one already given out (links to one table view or plot use it
  // too), or a new one; "Revoke link" ends it and every view shared with it.
  document.getElementById("share").addEventListener("click", guard(async () => {
    const data = await call("POST", actions.dataset.share, { reuse: true });
    shareUrl.value = data.url;
    shareBox.hidden = false;
    shareUrl.select();
    say("Anyone with this link can read this job (not change it) until you revoke it.");
  }));
  document.getElementById("share-copy").addEventListener("click", guard(async () => {
    await navigator.clipboard.writeText(shareUrl.value);
    say("Link copied.");
  }));
  document.getElementById("share-revoke").addEventListener("click", guard(async () => {
    await call("DELETE", actions.dataset.share);
    shareBox.hidden = true; shareUrl.value = "";
    say("The link is revoked: it no longer opens this job.");
  }));

  document.getElementById("delete").addEventListener("click", guard(async () => {
    if (!window.confirm("Delete this job, its log and all its files? This cannot be undone.")) return;
    await call("DELETE", actions.dataset.job);
    window.location.href = actions.dataset.home;
  }));
})();
