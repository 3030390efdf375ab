// History that survives the browser: make (shown once), copy and revoke the personal recovery
// link on the start page; on the link's own page, open that history in this browser.
(function () {
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const status = document.getElementById("recovery-status");
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
  document.querySelectorAll("#history-note .js-only, #recover .js-only").forEach(b => { b.hidden = false; });

  const recovery = document.getElementById("recovery");
  if (recovery) {
    const make = document.getElementById("recovery-make");
    const box = document.getElementById("recovery-box");
    const url = document.getElementById("recovery-url");
    make.addEventListener("click", async () => {
      try {
        const data = await call("POST", recovery.dataset.api);
        url.value = data.url; box.hidden = false; url.select();
        make.textContent = "Make a new recovery link";
        const state = document.getElementById("recovery-state");
        if (state) state.textContent = "The link you had before no longer works.";
        say("Keep this link private, e.g. in a password manager: it is not shown again.");
      } catch (err) { say(err.message, true); }
    });
    document.getElementById("recovery-copy").addEventListener("click", async () => {
      try { await navigator.clipboard.writeText(url.value); say("Recovery link copied."); }
      catch (err) { url.select(); say("Select the link and copy it.", true); }
    });
    const revoke = document.getElementById("recovery-revoke");
    if (revoke) revoke.addEventListener("click", async () => {
      try {
        await call("DELETE", recovery.dataset.api);
        box.hidden = true; url.value = ""; revoke.hidden = true;
        const state = document.getElementById("recovery-state");
        if (state) state.textContent = "";
        say("The recovery link is revoked: it opens nothing any more.");
      } catch (err) { say(err.message, true); }
    });
  }

  const open = document.getElementById("recover-open");
  if (open) open.addEventListener("click", async () => {
    open.disabled = true;
    try {
      const data = await call("POST", open.dataset.api, { token: open.dataset.token });
      window.location.href = data.home;
    } catch (err) { open.disabled = false; say(err.message, true); }
  });
})();
