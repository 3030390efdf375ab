// Upload page: choose (button or drop) files, check the limits and that each file is a table a
// reader handles (the server checks again), send them with progress and a cancel, then go to the
// job's live page. The model choice shows what it does with instructions: the offline analysis
// gets its options as checkboxes, an AI model the instructions box and what goes to its provider.
// The sample button runs the bundled dataset.
(function () {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const input = document.getElementById("file-input");
  const zone = document.getElementById("dropzone");
  const list = document.getElementById("file-list");
  const submit = document.getElementById("submit");
  const status = document.getElementById("upload-status");
  const progress = document.getElementById("progress");
  const bar = document.getElementById("progress-bar");
  const progressText = document.getElementById("progress-text");
  const cancelUpload = document.getElementById("upload-cancel");
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const limits = { files: Number(form.dataset.maxFiles), file: Number(form.dataset.maxFileBytes),
                   total: Number(form.dataset.maxRequestBytes) };
  const accepted = JSON.parse(form.dataset.accepted || "[]");
  const refused = JSON.parse(form.dataset.refused || "{}");
  const following = JSON.parse(form.dataset.following || "[]");
  let files = [];
  let xhr = null;
  const why = new WeakMap();   // file -> why no reader handles it ("" when one does)

  function human(n) {
    const units = ["B", "KB", "MB", "GB"]; let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }
  function clock(seconds) {
    const s = Math.max(0, Math.round(seconds));
    return s >= 60 ? `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s` : `${s} s`;
  }
  function say(text, isError) {
    status.className = "status-text" + (isError ? " error" : "");
    status.textContent = text;
  }

  // Which files a reader handles: the same rules as the server's frontend/readable.py.
  function extension(name) {
    const base = name.split("/").pop().toLowerCase();
    const dot = base.lastIndexOf(".");
    return dot > 0 ? base.slice(dot) : "";
  }
  function looksTabular(text) {
    let lines = text.split(/\r?\n/).slice(0, 40).filter(l => l.trim());
    if (lines.length > 1 && !/\n$/.test(text)) lines = lines.slice(0, -1);
    if (!lines.length) return false;
    for (const d of [",", "\t", ";", "|"]) {
      const counts = lines.map(l => l.split(d).length - 1);
      const tally = {};
      counts.forEach(c => { tally[c] = (tally[c] || 0) + 1; });
      const common = Number(Object.keys(tally).sort((a, b) => tally[b] - tally[a])[0]);
      if (common > 0 && tally[common] >= Math.max(1, 0.6 * lines.length)) return lines.length > 1 || d !== ",";
    }
    const numbers = /^\s*[-+]?\d[\d.eE+-]*(\s+[-+]?\d[\d.eE+-]*)+\s*$/;
    return lines.filter(l => numbers.test(l)).length >= Math.max(1, 0.6 * lines.length);
  }
  async function refusal(file) {
    const ext = extension(file.name);
    if (refused[ext]) return refused[ext];
    if (!accepted.includes(ext) && ext !== "") return `a ${ext} file, a format the analysis does not read`;
    if (ext === ".txt" || ext === "") {
      const text = await file.slice(0, 65536).text();
      if (text.includes("\u0000")) return "binary data, not text";
      if (text.trim() && !looksTabular(text)) return "text, not a table (no columns in its lines)";
    }
    return "";
  }
  function unreadable() {
    const bad = files.filter(f => why.get(f));
    if (!bad.length) return "";
    return `${bad.length === 1 ? "This file" : "These files"} cannot be analysed: ` +
      bad.map(f => `${f.name} (${why.get(f)})`).join("; ") + `. Upload ${form.dataset.acceptedWords}.`;
  }

  // The limits the server enforces, checked before anything is sent.
  function limitProblem() {
    const bad = unreadable();
    if (bad) return bad;
    if (files.length > limits.files) return `At most ${limits.files} files per job; remove ${files.length - limits.files}.`;
    const big = files.find(f => f.size > limits.file);
    if (big) return `${big.name} is ${human(big.size)}, over the limit of ${human(limits.file)} per file.`;
    const total = files.reduce((sum, f) => sum + f.size, 0);
    if (total > limits.total) return `These files add up to ${human(total)}, over the limit of ${human(limits.total)} per job.`;
    return "";
  }

  function render() {
    list.replaceChildren(...files.map((f, i) => {
      const li = document.createElement("li");
      const name = document.createElement("span"); name.className = "name"; name.textContent = f.name;
      const size = document.createElement("span"); size.className = "size"; size.textContent = human(f.size);
      if (why.get(f)) { li.className = "refused"; size.textContent += " · cannot be analysed"; }
      const rm = document.createElement("button"); rm.type = "button"; rm.className = "link remove";
      rm.textContent = "remove"; rm.setAttribute("aria-label", "Remove " + f.name);
      rm.onclick = () => { files.splice(i, 1); render(); zone.focus(); };
      li.append(name, size, rm); return li;
    }));
    const problem = limitProblem();
    submit.disabled = files.length === 0 || Boolean(problem) || xhr !== null;
    say(problem, Boolean(problem));
  }
  async function add(newFiles) {
    const added = Array.from(newFiles);
    await Promise.all(added.map(async f => { why.set(f, await refusal(f)); }));
    files = files.concat(added); render();
  }

  // What the chosen model does with instructions.
  const model = form.querySelector("select[name=model]");
  const options = document.getElementById("offline-options");
  const box = document.getElementById("instructions-box");
  function showModel() {
    if (!model) return;
    const follows = following.includes(model.value);
    options.hidden = options.disabled = follows;
    box.hidden = !follows;
    document.getElementById("instructions").disabled = !follows;
    document.querySelectorAll("#instructions-box .provider-notice").forEach(p => { p.hidden = p.dataset.model !== model.value; });
  }
  if (model) { model.addEventListener("change", showModel); showModel(); }

  zone.addEventListener("click", () => input.click());
  input.addEventListener("change", () => { add(input.files); input.value = ""; });
  ["dragenter", "dragover"].forEach(t => zone.addEventListener(t, e => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach(t => zone.addEventListener(t, e => { e.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", e => add(e.dataTransfer.files));
  // A file dropped anywhere else must not make the browser leave the page to show it.
  ["dragover", "drop"].forEach(t => window.addEventListener(t, e => {
    if (!zone.contains(e.target)) { e.preventDefault(); if (t === "dragover") e.dataTransfer.dropEffect = "none"; }
  }));

  function showProgress(sent, total, startedAt) {
    const seconds = (performance.now() - startedAt) / 1000;
    const speed = seconds > 0 ? sent / seconds : 0;
    const pct = total ? Math.floor(sent * 100 / total) : 0;
    bar.value = pct;
    const left = speed > 0 && sent < total ? ` · ${clock((total - sent) / speed)} left` : "";
    progressText.textContent = `${human(sent)} of ${human(total)} · ${pct}% · ${human(speed)}/s${left}`;
  }

  form.addEventListener("submit", e => {
    e.preventDefault();
    const problem = limitProblem();
    if (problem || !files.length) { say(problem || "Choose at least one file.", true); return; }
    const body = new FormData(form);
    body.delete("files");
    files.forEach(f => body.append("files", f, f.name));
    xhr = new XMLHttpRequest();
    const startedAt = performance.now();
    xhr.open("POST", form.dataset.api);
    xhr.setRequestHeader("X-CSRF-Token", token);
    xhr.upload.addEventListener("progress", ev => showProgress(ev.loaded, ev.total, startedAt));
    xhr.upload.addEventListener("load", () => { progressText.textContent += " · starting the job…"; });
    xhr.addEventListener("load", () => {
      let data = {};
      try { data = JSON.parse(xhr.responseText); } catch (err) { data = { error: `the server answered ${xhr.status}` }; }
      if (xhr.status === 201 && data.urls) { window.location.href = data.urls.page; return; }
      finish(data.error || `the server answered ${xhr.status}`);
    });
    xhr.addEventListener("error", () => finish("the upload failed: the connection was lost"));
    xhr.addEventListener("abort", () => finish("Upload cancelled; nothing was sent to a sandbox.", false));
    progress.hidden = false; submit.disabled = true; say("Uploading…");
    showProgress(0, files.reduce((sum, f) => sum + f.size, 0), startedAt);
    xhr.send(body);
    cancelUpload.focus();
  });
  cancelUpload.addEventListener("click", () => { if (xhr) xhr.abort(); });

  function finish(message, isError = true) {
    xhr = null; progress.hidden = true; render(); say(message, isError); submit.focus();
  }

  const sample = document.getElementById("sample");
  if (sample) sample.addEventListener("click", async () => {
    sample.disabled = true; say("Starting the sample job…");
    const resp = await fetch(sample.dataset.api, { method: "POST", headers: { "X-CSRF-Token": token } });
    const data = await resp.json().catch(() => ({}));
    if (resp.ok && data.urls) { window.location.href = data.urls.page; return; }
    sample.disabled = false; say(data.error || `the server answered ${resp.status}`, true);
  });

  document.querySelectorAll("time[data-ts]").forEach(t => {
    t.textContent = new Date(Number(t.dataset.ts) * 1000).toLocaleString();
  });
})();
