// Upload page: pick or drop files, post them with the CSRF token, go to the job's live page.
(function () {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const input = document.getElementById("file-input");
  const zone = document.getElementById("dropzone");
  const list = document.getElementById("file-list");
  const submit = document.getElementById("submit");
  const status = document.getElementById("upload-status");
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const maxFiles = Number(form.dataset.maxFiles);
  let files = [];

  function human(n) {
    const units = ["B", "KB", "MB", "GB"]; let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }
  function render() {
    list.replaceChildren(...files.map((f, i) => {
      const li = document.createElement("li");
      const name = document.createElement("span"); name.textContent = f.name;
      const size = document.createElement("span"); size.className = "size"; size.textContent = human(f.size);
      const rm = document.createElement("button"); rm.type = "button"; rm.textContent = "remove";
      rm.onclick = () => { files.splice(i, 1); render(); };
      li.append(name, size, rm); return li;
    }));
    submit.disabled = files.length === 0;
    status.textContent = files.length > maxFiles ? `at most ${maxFiles} files per job` : "";
  }
  function add(newFiles) { files = files.concat(Array.from(newFiles)); render(); }

  input.addEventListener("change", () => { add(input.files); input.value = ""; });
  ["dragenter", "dragover"].forEach(t => zone.addEventListener(t, e => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach(t => zone.addEventListener(t, e => { e.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", e => add(e.dataTransfer.files));

  form.addEventListener("submit", async e => {
    e.preventDefault();
    const body = new FormData(form);
    body.delete("files");
    files.forEach(f => body.append("files", f, f.name));
    submit.disabled = true; status.className = "status-text"; status.textContent = "uploading…";
    try {
      const resp = await fetch(form.dataset.api, { method: "POST", body, headers: { "X-CSRF-Token": token } });
      const data = await resp.json().catch(() => ({ error: `server answered ${resp.status}` }));
      if (!resp.ok) throw new Error(data.error || `server answered ${resp.status}`);
      window.location.href = data.urls.page;
    } catch (err) {
      status.className = "status-text error"; status.textContent = err.message; submit.disabled = false;
    }
  });

  document.querySelectorAll("time[data-ts]").forEach(t => {
    t.textContent = new Date(Number(t.dataset.ts) * 1000).toLocaleString();
  });
})();
