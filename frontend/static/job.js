// Live job page: follow the job's events over SSE and render them readably.
(function () {
  const job = document.getElementById("job");
  if (!job) return;
  const log = document.getElementById("log");
  const badge = document.getElementById("status");
  const elapsed = document.getElementById("elapsed");
  const queue = document.getElementById("queue");
  const cancel = document.getElementById("cancel");
  const reason = document.getElementById("reason");
  const jump = document.getElementById("jump");
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const FINAL = ["succeeded", "failed", "timeout", "command_timeout", "idle_timeout", "cancelled",
                 "error", "interrupted"];
  let started = Number(job.dataset.started) || null;
  let finished = Number(job.dataset.finished) || null;
  let current = null;        // the command block that output events go into
  let follow = true;         // auto-scroll unless the user scrolled up

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function nearBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 40; }
  log.addEventListener("scroll", () => { follow = nearBottom(); if (follow) jump.hidden = true; });
  jump.addEventListener("click", () => { log.scrollTop = log.scrollHeight; follow = true; jump.hidden = true; });

  function append(node) {
    log.appendChild(node);
    if (follow) log.scrollTop = log.scrollHeight; else jump.hidden = false;
  }
  function line(cls, text) { append(el("div", "line " + cls, text)); }

  function setStatus(status, message) {
    job.dataset.status = status;
    badge.textContent = status;
    badge.className = "badge status-" + status;
    const active = !FINAL.includes(status);
    cancel.hidden = !active;
    if (active && status !== "queued" && !started) started = Date.now() / 1000;
    if (!active && !finished) finished = Date.now() / 1000;
    if (!active && message && status !== "succeeded") reason.textContent = message;
    if (status !== "queued") queue.textContent = "";
  }

  const render = {
    run_started: d => line("status", `run started: model ${d.model || "?"} in the ${d.environment || "?"} environment`),
    step: (d, e) => line("step", `Step ${e.step ?? ""}${d.text ? " · " + d.text : ""}`),
    command_started: d => {
      const block = el("div", "cmd");
      const label = d.kind === "write_file" ? "" : d.kind === "python" ? "python ▸ " : "$ ";
      block.appendChild(el("div", "cmd-line", label + (d.command || d.path || "")));
      current = el("div", "cmd-out");
      block.appendChild(current);
      append(block);
    },
    output: d => {
      const text = (d.text || "") + (d.truncated ? "\n… output truncated" : "");
      const span = el("span", d.stream === "stderr" ? "stderr" : "", text);
      if (current) {
        current.appendChild(span);
        // A long output scrolls in its own box: follow it there as well as in the log.
        if (follow) { current.scrollTop = current.scrollHeight; log.scrollTop = log.scrollHeight; }
        else jump.hidden = false;
      }
      else line(d.stream === "stderr" ? "stderr" : "raw", text);
    },
    command_finished: d => {
      const bad = d.exit_code !== 0 || d.timed_out;
      const text = `exit ${d.exit_code}` + (d.duration != null ? ` · ${Number(d.duration).toFixed(2)} s` : "") +
        (d.timed_out ? " · timed out" : "");
      const target = current ? current.parentNode : log;
      target.appendChild(el("div", "exit" + (bad ? " bad" : ""), text));
      if (follow) log.scrollTop = log.scrollHeight;
      current = null;
    },
    file_written: d => line("file", `wrote ${d.path} (${d.size} bytes)`),
    message: d => line("msg", d.text || ""),
    warning: d => line("warning", "warning: " + (d.message || "")),
    error: d => line("error", "error: " + (d.message || "")),
    run_finished: d => line("status", `run finished: ${d.status}` + (d.reason ? ` (${d.reason})` : "")),
    raw: d => line(d.stream === "stderr" ? "stderr" : "raw", d.text || ""),
    status: d => { line("status", `— ${d.status}${d.message ? ": " + d.message : ""}`); setStatus(d.status, d.message); },
    result: d => line("status", `outputs collected: ${d.files ?? 0} files, ${d.skipped ?? 0} not brought back`),
    usage: (d, e) => {
      const n = x => Number(x || 0).toLocaleString("en");
      line("usage", `tokens: ${n(d.input_tokens)} in, ${n(d.output_tokens)} out` +
        ` · job ${n(d.job_tokens)}` + (d.max_tokens ? ` of ${n(d.max_tokens)}` : ""));
      const tokens = document.getElementById("tokens");
      if (tokens) tokens.textContent = `${n(d.job_tokens)} in ${d.calls} call${d.calls === 1 ? "" : "s"}` +
        (d.max_tokens ? ` (budget ${n(d.max_tokens)})` : "");
    },
  };

  const source = new EventSource(job.dataset.events);
  Object.keys(render).forEach(type => source.addEventListener(type, msg => {
    let event;
    try { event = JSON.parse(msg.data); } catch (err) { return; }
    render[type](event.data || {}, event);
  }));
  source.addEventListener("end", msg => {
    source.close();
    const status = JSON.parse(msg.data).status;
    setStatus(status);
    const followUp = document.getElementById("follow-up");
    if (followUp) followUp.hidden = false;
    refreshJob().then(loadResults);
  });

  async function refreshJob() {
    const resp = await fetch(job.dataset.api);
    if (!resp.ok) return;
    const data = await resp.json();
    started = data.started; finished = data.finished;
    queue.textContent = data.queue_position ? `position ${data.queue_position} in the queue` : "";
    if (FINAL.includes(data.status)) {
      setStatus(data.status);
      if (data.reason && data.status !== "succeeded") reason.textContent = data.reason;
    }
  }
  async function loadResults() {
    const resp = await fetch(job.dataset.results);
    if (resp.ok) document.getElementById("results").innerHTML = await resp.text();
    document.body.dataset.resultsLoaded = "1";
  }

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    const resp = await fetch(job.dataset.cancel, { method: "POST", headers: { "X-CSRF-Token": token } });
    if (!resp.ok) { cancel.disabled = false; line("error", "could not cancel: " + resp.status); }
  });

  function tick() {
    if (started) {
      const end = finished || Date.now() / 1000;
      elapsed.textContent = `${Math.max(0, end - started).toFixed(0)} s`;
    }
  }
  setInterval(tick, 1000); tick();
  setInterval(() => { if (job.dataset.status === "queued") refreshJob(); }, 2000);
  document.querySelectorAll("time[data-ts]").forEach(t => {
    t.textContent = new Date(Number(t.dataset.ts) * 1000).toLocaleString();
  });
})();
