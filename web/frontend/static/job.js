// Live job page: follow the job's events over SSE and render them readably:
// the phase (queued → starting → running → collecting → done), the step and input file being
// worked on, steps that fold, routine steps folded into one line, long outputs folded,
// RESULT lines as summaries. The server renders the same log for pages without JavaScript.
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
  const stepInfo = document.getElementById("step-info");
  const announce = document.getElementById("announce");
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const STATUSES = JSON.parse(job.dataset.statuses);  // {active, final, tones}: from agent_sandbox.events
  const FINAL = STATUSES.final;
  const PHASES = ["queued", "starting", "running", "collecting", "done"];
  const OUTCOMES = JSON.parse(job.dataset.outcomes || "{}");   // how the last phase reads for each end
  const reached = new Set(["queued"]);   // phases the job went through: only these get a ✓
  const FOLD_LINES = 12;
  const inputs = JSON.parse(job.dataset.files || "[]");
  let started = Number(job.dataset.started) || null;
  let finished = Number(job.dataset.finished) || null;
  let step = null;           // the current step block {box, body, number, text, commands}
  let current = null;        // the command block that output events go into
  let follow = true;         // auto-scroll unless the user scrolled up
  let phase = null;
  const wasActive = !FINAL.includes(job.dataset.status);  // else the stream only replays a finished job

  log.replaceChildren();     // drop the server-rendered copy kept for pages without JavaScript
  document.querySelectorAll(".js-only").forEach(b => { b.hidden = false; });

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  // Screen readers hear phase changes, the file being worked on and the end: not every log line.
  function say(text) { if (wasActive) announce.textContent = text; }
  function clock(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor(s % 3600 / 60)).padStart(2, "0")} min`;
    return s >= 60 ? `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s` : `${s} s`;
  }
  function nearBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 40; }
  log.addEventListener("scroll", () => { follow = nearBottom(); if (follow) jump.hidden = true; });
  jump.addEventListener("click", () => { log.scrollTop = log.scrollHeight; follow = true; jump.hidden = true; });
  function scrolled() { if (follow) log.scrollTop = log.scrollHeight; else jump.hidden = false; }

  function append(node) { (step && !node.classList.contains("top") ? step.body : log).appendChild(node); scrolled(); }
  function line(cls, text) { append(el("div", "line " + cls, text)); }
  function topLine(cls, text) { endStep(); log.appendChild(el("div", "line top " + cls, text)); scrolled(); }

  // -- progress: phase, step, input files ----------------------------------

  function setPhase(next) {
    if (next === phase) return;
    phase = next;
    reached.add(next);
    if (next === "collecting" || next === "running") reached.add("starting");
    drawPhases();
    if (next !== "done") say(document.querySelector(`#phases li[data-phase="${next}"]`).textContent);
  }
  // Passed phases get a ✓; those a cancelled or failed job never reached are marked skipped,
  // and the last one says how it ended.
  function drawPhases(status) {
    const at = PHASES.indexOf(phase);
    const bad = status && status !== "succeeded";
    if (status === "succeeded") PHASES.forEach(p => reached.add(p));
    document.querySelectorAll("#phases li").forEach((li, i) => {
      const p = li.dataset.phase;
      li.className = i === at ? "current" + (bad && p === "done" ? " bad" : "")
        : i < at ? (reached.has(p) ? "past" : "skipped") : "";
      if (i === at) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
      if (p === "done" && status) li.textContent = OUTCOMES[status] || "Done";
    });
  }
  // At the end: a file still being analysed was stopped (or, after a success, nothing is claimed).
  function settleFiles(status) {
    document.querySelectorAll('#file-progress li[data-state="working"]').forEach(li => {
      if (status === "succeeded") { delete li.dataset.state; li.querySelector(".fstate").textContent = ""; }
      else { li.dataset.state = "stopped"; li.querySelector(".fstate").textContent = "stopped"; }
    });
  }
  function setFile(name, state, label) {
    const li = document.querySelector(`#file-progress li[data-file="${CSS.escape(name)}"]`);
    if (!li) return;
    li.dataset.state = state;
    li.querySelector(".fstate").textContent = label || state;
  }
  function fileOf(command) {
    return inputs.find(name => command.includes("/workspace/" + name));
  }
  let lastStep = null;
  function showStep(n, of, file) {
    lastStep = n;
    let text = `Step ${n}` + (of ? ` of ${of}` : "");
    if (file) text += ` · file ${inputs.indexOf(file) + 1} of ${inputs.length}: ${file}`;
    stepInfo.textContent = text;
  }

  function setStatus(status, message) {
    if (status === "starting" || status === "collecting") { setPhase(status); return; }  // phases of "running"
    job.dataset.status = status;
    badge.textContent = status;
    badge.className = "badge tone-" + (STATUSES.tones[status] || "waiting");
    const active = !FINAL.includes(status);
    cancel && (cancel.hidden = !active);
    const del = document.getElementById("delete");
    if (del) { del.disabled = active; del.title = active ? "cancel the job first" : ""; }
    if (active && status !== "queued" && !started) started = Date.now() / 1000;
    if (!active && !finished) finished = Date.now() / 1000;
    if (!active && message && status !== "succeeded") reason.textContent = message;
    if (status !== "queued") queue.textContent = "";
    if (status === "queued") setPhase("queued");
    else if (status === "running" && (!phase || phase === "queued")) setPhase("starting");
    if (!active) { setPhase("done"); drawPhases(status); settleFiles(status); say("Finished: " + status); }
  }

  // -- the log ---------------------------------------------------------------

  function newStep(n, text) {
    endStep();
    const box = el("details", "step");
    box.open = true;
    const summary = el("summary", "", `Step ${n ?? ""}` + (text ? " · " + text : ""));
    box.appendChild(summary);
    const body = el("div", "step-body");
    box.appendChild(body);
    log.appendChild(box);
    step = { box, body, number: n, text, commands: [] };
    scrolled();
  }
  // A step that only wrote files is routine: it joins the folded group of such steps before it.
  function endStep() {
    const done = step;
    step = null; current = null;
    if (!done || !done.commands.length || !done.commands.every(c => c.kind === "write_file" && c.ok)) return;
    let group = done.box.previousElementSibling;
    if (!group || !group.classList.contains("routine")) {
      group = el("details", "step routine");
      group.appendChild(el("summary"));
      group.steps = [];
      done.box.before(group);
    }
    group.steps.push(done);
    const para = el("p", "step-text", `Step ${done.number} · ${done.text || ""}`);
    group.append(para, ...done.body.childNodes);
    done.box.remove();
    const paths = group.steps.flatMap(s => s.commands.map(c => c.path));
    const first = group.steps[0].number, last = done.number;
    group.firstChild.textContent = (first === last ? `Step ${first}` : `Steps ${first}–${last}`) +
      ` · wrote ${paths.length} file${paths.length === 1 ? "" : "s"}: ${paths.join(", ")}`;
  }

  function resultSummary(payload) {
    if ("file" in payload) {
      if (payload.status === "ok") {
        const took = typeof payload.seconds === "number" ? ` in ${payload.seconds.toFixed(1)} s` : "";
        return `✓ ${payload.file} → ${(payload.tables || []).join(", ") || "no table"}${took}`;
      }
      const mark = payload.status === "skipped" ? "↷" : "✗";
      return `${mark} ${payload.file} ${payload.status || "failed"}: ${payload.reason || "no reason given"}`;
    }
    if ("analysed" in payload) {
      return `✓ report: ${payload.files ?? "?"} file(s), ${payload.analysed ?? 0} analysed, ` +
        `${payload.skipped ?? 0} skipped, ${payload.failed ?? 0} failed`;
    }
    return "result: " + Object.entries(payload).filter(([, v]) => typeof v !== "object").map(([k, v]) => `${k} ${v}`).join(", ");
  }
  function outputLine(text, stream) {
    if (text.startsWith("RESULT {")) {
      try {
        const payload = JSON.parse(text.slice(7));
        if (payload && typeof payload === "object") {
          if ("file" in payload) {
            const label = payload.status === "ok" ? "done" : payload.status || "failed";
            setFile(payload.file, payload.status === "ok" ? "done" : payload.status === "skipped" ? "skipped" : "failed", label);
          }
          return el("span", "result", resultSummary(payload) + "\n");
        }
      } catch (err) { /* shown as text */ }
    }
    return el("span", stream === "stderr" ? "stderr" : "", text + "\n");
  }

  const render = {
    run_started: d => { setPhase("running"); topLine("status", `run started: model ${d.model || "?"} in the ${d.environment || "?"} environment`); },
    step: (d, e) => { setPhase("running"); newStep(e.step, d.text); showStep(e.step, d.of); },
    command_started: (d, e) => {
      if (!step) newStep(e.step, "");
      const block = el("div", "cmd");
      const label = d.kind === "write_file" ? "" : d.kind === "python" ? "python ▸ " : "$ ";
      const text = d.command || d.path || "";
      block.appendChild(el("div", "cmd-line", label + text));
      const out = el("pre", "cmd-out");
      block.appendChild(out);
      current = { block, out, lines: 0, kind: d.kind, path: text.replace(/^write /, ""), ok: false };
      step.commands.push(current);
      const file = fileOf(text);
      if (file) {
        setFile(file, "working", "analysing");
        showStep(e.step, d.of, file);
        say(`Analysing file ${inputs.indexOf(file) + 1} of ${inputs.length}: ${file}`);
      }
      append(block);
    },
    output: d => {
      const text = (d.text || "") + (d.truncated ? "\n… output truncated" : "");
      const lines = text.replace(/\n$/, "").split("\n");
      if (!current) { lines.forEach(t => line(d.stream === "stderr" ? "stderr" : "raw", t)); return; }
      lines.forEach(t => current.out.appendChild(outputLine(t, d.stream)));
      current.lines += lines.length;
      // A long output scrolls in its own box: follow it there as well as in the log.
      if (follow) { current.out.scrollTop = current.out.scrollHeight; log.scrollTop = log.scrollHeight; }
      else jump.hidden = false;
    },
    command_finished: d => {
      const bad = d.exit_code !== 0 || d.timed_out;
      const text = `exit ${d.exit_code}` + (d.duration != null ? ` · ${Number(d.duration).toFixed(2)} s` : "") +
        (d.timed_out ? " · timed out" : "");
      if (current) {
        current.ok = !bad;
        if (current.lines > FOLD_LINES) foldOutput(current);
        current.block.appendChild(el("div", "exit" + (bad ? " bad" : ""), text));
      } else line("exit" + (bad ? " bad" : ""), text);
      scrolled();
      current = null;
    },
    file_written: d => line("file", `wrote ${d.path} (${d.size} bytes)`),
    message: d => line("msg", d.text || ""),
    warning: d => line("warning", "warning: " + (d.message || "")),
    error: d => line("error", "error: " + (d.message || "")),
    run_finished: d => topLine("status", `run finished: ${d.status}` + (d.reason ? ` (${d.reason})` : "")),
    raw: d => line(d.stream === "stderr" ? "stderr" : "raw", d.text || ""),
    status: d => { topLine("status", `— ${d.status}${d.message ? ": " + d.message : ""}`); setStatus(d.status, d.message); },
    result: d => topLine("status", `outputs collected: ${d.files ?? 0} files, ${d.skipped ?? 0} not brought back`),
    usage: (d, e) => {
      const n = x => Number(x || 0).toLocaleString("en");
      line("usage", `tokens: ${n(d.input_tokens)} in, ${n(d.output_tokens)} out` +
        ` · job ${n(d.job_tokens)}` + (d.max_tokens ? ` of ${n(d.max_tokens)}` : ""));
      const tokens = document.getElementById("tokens");
      if (tokens) tokens.textContent = `${n(d.job_tokens)} in ${d.calls} call${d.calls === 1 ? "" : "s"}` +
        (d.max_tokens ? ` (budget ${n(d.max_tokens)})` : "");
    },
  };

  // A long output folds away once its command is done; the results stay visible.
  function foldOutput(command) {
    const fold = el("details", "out-fold");
    fold.appendChild(el("summary", "", `Output: ${command.lines} lines`));
    command.out.before(fold);
    fold.appendChild(command.out);
    command.out.querySelectorAll(".result").forEach(r => fold.after(el("div", "line result", r.textContent.trim())));
  }

  document.getElementById("expand-all").addEventListener("click", () => log.querySelectorAll("details").forEach(d => { d.open = true; }));
  document.getElementById("collapse-all").addEventListener("click", () => log.querySelectorAll("details").forEach(d => { d.open = false; }));

  // The browser reconnects by itself after a dropped stream; a refused one (the server's caps on
  // live logs: 429 or 503) closes for good, so we try again later from the last event seen.
  let lastId = 0;
  function subscribe() {
    const source = new EventSource(job.dataset.events + (lastId ? `?after=${lastId}` : ""));
    Object.keys(render).forEach(type => source.addEventListener(type, msg => {
      let event;
      try { event = JSON.parse(msg.data); } catch (err) { return; }
      if (msg.lastEventId) lastId = Number(msg.lastEventId);
      render[type](event.data || {}, event);
    }));
    source.addEventListener("end", msg => { source.close(); ended(msg); });
    source.addEventListener("error", () => {
      if (source.readyState !== EventSource.CLOSED) return;
      topLine("warning", "live log paused: the server refused it (too many live logs open); trying again in 10 s");
      setTimeout(subscribe, 10000);
    });
  }
  subscribe();
  function ended(msg) {
    endStep();
    const status = JSON.parse(msg.data).status;
    setStatus(status);
    if (lastStep) stepInfo.textContent = `${lastStep} step${lastStep === 1 ? "" : "s"}`;
    // A job that had ended before the page loaded already shows its results.
    if (wasActive) refreshJob().then(loadResults); else document.body.dataset.resultsLoaded = "1";
  }

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
    const box = document.getElementById("results");
    if (resp.ok) box.innerHTML = await resp.text();
    document.body.dataset.resultsLoaded = "1";
    const title = document.getElementById("results-title");
    if (title && wasActive) {  // bring the results into view; focus too unless the reader is busy elsewhere
      title.scrollIntoView({ block: "start" });
      if (document.activeElement === document.body) title.focus({ preventScroll: true });
    }
  }

  if (cancel) cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    const resp = await fetch(job.dataset.cancel, { method: "POST", headers: { "X-CSRF-Token": token } });
    if (!resp.ok) { cancel.disabled = false; topLine("error", "could not cancel: " + resp.status); }
  });

  function tick() {
    if (started) elapsed.textContent = clock((finished || Date.now() / 1000) - started);
  }
  setInterval(tick, 1000); tick();
  setInterval(() => { if (job.dataset.status === "queued") refreshJob(); }, 2000);
  document.querySelectorAll("time[data-ts]").forEach(t => {
    t.textContent = new Date(Number(t.dataset.ts) * 1000).toLocaleString();
  });
})();
