/* langgraph-moa web UI: one page, no build step, no network beyond its own server.
 *
 * Reads only the router's endpoints (ui/api/...). A run is a POST whose response is a
 * server-sent event stream (see the README, "Web UI"): each event updates a card. Tokens are
 * a preview; the `answer`, `call` and `final` events carry the authoritative text and numbers,
 * so a card is right even when its model did not stream. */
"use strict";

const $ = (id) => document.getElementById(id);
const state = { specs: [], thread: null, busy: false, graphFor: null, abort: null };
const FINAL = new Set(["aggregator", "fallback"]);

// ---------------------------------------------------------------- small helpers

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function secs(s) {
  if (s === null || s === undefined) return "–";
  return s < 10 ? `${s.toFixed(2)} s` : `${s.toFixed(1)} s`;
}

function usd(x) {
  if (x === null || x === undefined) return null;
  return x < 0.01 ? `$${x.toFixed(5)}` : `$${x.toFixed(3)}`;
}

function banner(message) {
  const b = $("banner");
  b.textContent = message;
  b.hidden = !message;
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  if (!response.ok) throw new Error(await errorText(response));
  return response.json();
}

async function errorText(response) {
  try {
    const body = await response.json();
    const detail = body.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
    return JSON.stringify(body);
  } catch (e) {
    return `HTTP ${response.status} ${response.statusText}`;
  }
}

function markdown(text) {
  if (window.marked && window.DOMPurify) {
    return window.DOMPurify.sanitize(window.marked.parse(text, { gfm: true, breaks: false }));
  }
  const div = el("div");
  div.textContent = text;  // the libraries failed to load: plain text beats a blank panel
  return div.innerHTML;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {  // not a secure context (LAN address): the old way
    const area = el("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
}

// ---------------------------------------------------------------- a turn on the page

const STATUS_LABEL = {
  waiting: "waiting", running: "running", retrying: "retrying", done: "done", ok: "done",
  failed: "failed", timeout: "timed out", cut: "cut", fallback: "fallback", paused: "paused",
};

class Turn {
  constructor(question, layout) {
    this.cards = new Map();
    this.refs = new Map();
    this.root = el("article", "turn");
    this.root.append(el("div", "question", question));
    this.layersEl = el("div", "layers");
    this.root.append(this.layersEl);
    this.finalText = "";
    this.finalId = null;
    this.pending = false;
    this.buildFinal();
    this.summaryEl = el("div", "summary");
    this.errorEl = el("div", "error");
    this.errorEl.setAttribute("role", "alert");
    this.errorEl.hidden = true;
    this.root.append(this.summaryEl, this.errorEl);
    if (layout) this.setLayout(layout);
  }

  setLayout(layout) {
    this.layersEl.textContent = "";
    this.cards.clear();
    this.refs.clear();
    layout.layers.forEach((seats, i) => {
      const section = el("section", "layer");
      section.dataset.layer = String(i + 1);
      const head = el("h3", null, `Layer ${i + 1}`);
      const note = el("span", "layer-note", "");
      head.append(note);
      const row = el("div", "cards");
      seats.forEach((seat) => row.append(this.card(seat).root));
      const refs = el("details", "refs");
      refs.hidden = true;
      section.append(head, row, refs);
      this.layersEl.append(section);
      this.refs.set(i + 1, { section, note, refs });
    });
    if (layout.aggregator) {
      this.finalModel.textContent = layout.aggregator.model;
      this.finalModel.title = layout.aggregator.model_id;
    }
  }

  card(seat) {
    const root = el("div", "card");
    root.dataset.node = seat.node;
    const head = el("header");
    const name = el("span", "model", seat.model);
    name.title = seat.model_id;
    const status = el("span", "status s-waiting", "waiting");
    head.append(name, status);
    const text = el("div", "text");
    const reason = el("div", "reason");
    reason.hidden = true;
    const meta = el("footer", "meta", seat.model_id);
    root.append(head, text, reason, meta);
    const card = { root, status, text, reason, meta, tokenId: null, seat };
    this.cards.set(seat.node, card);
    return card;
  }

  buildFinal() {
    const root = el("section", "final");
    root.setAttribute("aria-label", "Final answer");
    const head = el("header");
    const title = el("span", "final-title", "Answer");
    this.finalModel = el("span", "model", "");
    this.finalStatus = el("span", "status s-waiting", "waiting");
    this.copyBtn = el("button", "copy", "Copy");
    this.copyBtn.type = "button";
    this.copyBtn.disabled = true;
    this.copyBtn.addEventListener("click", async () => {
      await copyText(this.finalText);
      this.copyBtn.textContent = "Copied";
      setTimeout(() => { this.copyBtn.textContent = "Copy"; }, 1500);
    });
    head.append(title, this.finalModel, this.finalStatus, this.copyBtn);
    this.finalBody = el("div", "markdown");
    this.finalReason = el("div", "reason");
    this.finalReason.hidden = true;
    this.finalMeta = el("footer", "meta", "");
    this.finalRefs = el("details", "refs");
    this.finalRefs.hidden = true;
    root.append(head, this.finalReason, this.finalBody, this.finalMeta, this.finalRefs);
    this.root.append(root);
  }

  setStatus(node, status, reason) {
    const target = FINAL.has(node) ? { status: this.finalStatus, reason: this.finalReason } : this.cards.get(node);
    if (!target) return;
    target.status.textContent = STATUS_LABEL[status] || status;
    target.status.className = `status s-${status}`;
    if (reason !== undefined) {
      target.reason.textContent = reason || "";
      target.reason.hidden = !reason;
    }
  }

  token(data) {
    if (FINAL.has(data.node)) {
      if (this.finalId !== data.id) { this.finalText = ""; this.finalId = data.id; }
      this.finalText += data.text;
      this.renderFinal();
      return;
    }
    const card = this.cards.get(data.node);
    if (!card) return;
    if (card.tokenId !== data.id) { card.text.textContent = ""; card.tokenId = data.id; }
    card.text.textContent += data.text;
  }

  answer(node, text) {
    const card = this.cards.get(node);
    if (card) card.text.textContent = text;
  }

  final(text) {
    this.finalText = text;
    this.renderFinal(true);
  }

  renderFinal(now) {
    const paint = () => {
      this.pending = false;
      this.finalBody.innerHTML = markdown(this.finalText);
      this.copyBtn.disabled = !this.finalText;
    };
    if (now) return paint();
    if (!this.pending) { this.pending = true; requestAnimationFrame(paint); }
  }

  call(record) {
    const cost = usd(record.cost_usd);
    const answered = record.status === "ok" || record.status === "fallback";
    const parts = answered
      ? [secs(record.latency_s), `${record.input_tokens} in / ${record.output_tokens} out tok`]
      : [];
    if (cost && answered) parts.push(cost);
    if (record.attempts > 1) parts.push(`${record.attempts} attempts`);
    if (record.truncated) parts.push(`${record.truncated} refs shortened`);
    const status = record.status === "ok" ? "done" : record.status;
    if (record.role === "aggregator") {
      this.finalMeta.textContent = `${record.model} · ${parts.join(" · ")}`;
      this.setStatus("aggregator", status, record.status === "ok" ? "" : record.error);
      return;
    }
    const card = this.cards.get(record.node);
    if (!card) return;
    card.meta.textContent = parts.join(" · ");
    card.meta.title = record.model_id;
    this.setStatus(record.node, status, record.status === "ok" ? "" : record.error);
  }

  progress(e) {
    const node = e.node;
    switch (e.event) {
      case "layer_started": {
        const layer = this.refs.get(e.layer);
        if (layer) layer.note.textContent = " · running";
        break;
      }
      case "layer_finished": {
        const layer = this.refs.get(e.layer);
        if (layer) layer.note.textContent = ` · ${e.answers}/${e.of} answered`;
        break;
      }
      case "call_started":
        if (e.attempt > 1) this.setStatus(node, "retrying");
        else this.setStatus(node, "running", "");
        if (FINAL.has(node)) {
          this.finalModel.textContent = e.model;
          if (node === "fallback") this.finalModel.textContent = `${e.model} (fallback)`;
        }
        break;
      case "call_error":
        if (e.will_retry) this.setStatus(node, "retrying", `attempt ${e.attempt}: ${e.error}`);
        break;
      case "call_failed":
        this.setStatus(node, "failed", e.error);
        break;
      case "call_cut":
        this.setStatus(node, "cut", "cut by the layer deadline: the layer went on without it");
        break;
      case "call_fallback":
        this.setStatus(node, "fallback", `answered by ${e.model} (${e.replaces} failed: ${e.error})`);
        break;
      case "call_finished":
        this.setStatus(node, "done");
        break;
      default:
        break;
    }
  }

  references(data) {
    const fill = (details, label, refs) => {
      details.textContent = "";
      details.append(el("summary", null, `${label} (${refs.length})`));
      const list = el("ol");
      refs.forEach((r) => list.append(el("li", null, r)));
      details.append(list);
      details.hidden = false;
    };
    const layer = this.refs.get(data.layer);
    const last = data.layer === this.refs.size;
    if (layer && !last) fill(layer.refs, `What layer ${data.layer + 1} read`, data.references);
    if (last || !layer) fill(this.finalRefs, "References the aggregator read", data.references);
    if (data.fallback_reason) this.setStatus("aggregator", "fallback", data.fallback_reason);
  }

  summary(s, fallbackReason) {
    if (!s) return;
    const parts = [
      `${s.calls} calls`,
      `${s.failed} failed`,
      `${s.cut} cut`,
      `${s.input_tokens} in / ${s.output_tokens} out tokens`,
      s.cost_usd === null || s.cost_usd === undefined ? "cost unknown" : usd(s.cost_usd),
      `wall ${secs(s.wall_s)} vs critical path ${secs(s.critical_path_s)}`,
    ];
    this.summaryEl.textContent = parts.join(" · ");
    if (fallbackReason) this.summaryEl.textContent += ` · fallback answered: ${fallbackReason}`;
  }

  error(message) {
    this.errorEl.textContent = message;
    this.errorEl.hidden = false;
    if (!this.finalText) this.setStatus("aggregator", "failed");
    for (const card of this.cards.values()) {
      const s = card.status.className;
      if (s.includes("s-waiting")) this.setStatus(card.seat.node, "waiting", "not run");
      else if (s.includes("s-running") || s.includes("s-retrying")) this.setStatus(card.seat.node, "failed");
    }
  }

  /* The run paused before the aggregator: show what it will read, editable, and go on. */
  review(references, go) {
    this.setStatus("aggregator", "paused", "");
    const box = el("div", "review");
    box.append(el("p", null, "Paused for review: edit what the aggregator will read, then continue."));
    const areas = references.map((text, i) => {
      const area = el("textarea");
      area.value = text;
      area.rows = 3;
      area.setAttribute("aria-label", `Reference ${i + 1}`);
      box.append(area);
      return area;
    });
    const button = el("button", "continue", "Continue");
    button.type = "button";
    button.addEventListener("click", () => {
      if (state.busy) return;
      const edited = areas.map((a) => a.value);
      const same = edited.every((text, i) => text === references[i]);
      box.remove();
      go(same ? true : edited);
    });
    box.append(button);
    this.finalBody.before(box);
    button.focus();
  }

  handle(name, data) {
    switch (name) {
      case "progress": return this.progress(data);
      case "token": return this.token(data);
      case "answer": return this.answer(data.node, data.text);
      case "call": return this.call(data);
      case "references": return this.references(data);
      case "final": return this.final(data.text);
      case "done":
        this.final(data.answer);
        this.setStatus("aggregator", data.fallback_reason ? "fallback" : "done");
        return this.summary(data.summary, data.fallback_reason);
      case "error": {
        const partial = data.partial || {};
        for (const [node, text] of Object.entries(partial.answers || {})) this.answer(node, text);
        for (const record of partial.calls || []) this.call(record);
        this.summary(data.summary);
        return this.error(data.message);
      }
      default: return undefined;
    }
  }

  /* A stored turn (GET ui/api/threads/ID), drawn with the same handlers as a live one. */
  static stored(t) {
    const turn = new Turn(t.question, t.layout);
    for (const record of t.calls) turn.call(record);
    for (const [node, text] of Object.entries(t.answers)) turn.answer(node, text);
    const answered = new Map();
    for (const c of t.calls) {
      if (c.role !== "proposer") continue;
      const [n, of] = answered.get(c.layer) || [0, 0];
      answered.set(c.layer, [n + (c.status === "ok" || c.status === "fallback" ? 1 : 0), of + 1]);
    }
    for (const [layer, [n, of]] of answered) {
      const row = turn.refs.get(layer);
      if (row) row.note.textContent = ` · ${n}/${of} answered`;
    }
    if (t.references.length) {
      turn.references({ layer: turn.refs.size, references: t.references });
    }
    if (t.answer) {
      turn.final(t.answer);
      turn.setStatus("aggregator", t.fallback_reason ? "fallback" : "done");
    }
    turn.summary(t.summary, t.fallback_reason);
    if (t.error) turn.error(t.error);
    return turn;
  }
}

// ---------------------------------------------------------------- running a turn

async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield [name, JSON.parse(data.join("\n"))];
    }
  }
}

function setBusy(busy) {
  state.busy = busy;
  $("send").textContent = busy ? "Stop" : "Send";
  $("send").classList.toggle("stop", busy);
  $("send").setAttribute("aria-label", busy ? "Stop the run" : "Send the question");
}

async function ask(question) {
  const spec = $("spec").value;
  $("empty")?.remove();
  const turn = new Turn(question, specNamed(spec)?.layout);
  $("conversation").append(turn.root);
  turn.root.scrollIntoView({ block: "start", behavior: "smooth" });
  await run(turn, { spec, question, thread_id: state.thread });
}

/* Continue a turn paused for review: its cards stay, the aggregator's events follow. */
async function resume(turn, spec, decision) {
  await run(turn, { spec, thread_id: state.thread, resume: decision });
}

async function run(turn, body) {
  state.abort = new AbortController();
  setBusy(true);
  let finished = false;
  try {
    const response = await fetch("ui/api/runs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: state.abort.signal,
    });
    if (!response.ok) throw new Error(await errorText(response));
    for await (const [name, data] of sseEvents(response)) {
      if (name === "run") {
        state.thread = data.thread_id;
        history.replaceState(null, "", `#thread=${encodeURIComponent(data.thread_id)}`);
        if (!data.resumed) turn.setLayout(data.layout);
      } else if (name === "review") {
        turn.review(data.references, (decision) => resume(turn, body.spec, decision));
      } else {
        turn.handle(name, data);
      }
      if (name === "done" || name === "error" || name === "review") finished = true;
    }
    if (!finished) throw new Error("the connection to the server closed before the run ended");
  } catch (e) {
    const stopped = e.name === "AbortError";
    turn.error(stopped ? "Stopped: the run was cancelled (what had finished is kept)." : String(e.message || e));
  } finally {
    state.abort = null;
    setBusy(false);
    loadThreads().catch(() => {});
  }
}

// ---------------------------------------------------------------- specs, graph, threads

function specNamed(name) {
  return state.specs.find((s) => s.name === name);
}

async function loadSpecs() {
  const { specs } = await getJSON("ui/api/specs");
  state.specs = specs;
  const select = $("spec");
  select.textContent = "";
  for (const s of specs) {
    const sizes = s.layout.layers.map((l) => l.length).join("+");
    const keys = Object.keys(s.missing_keys);
    const label = `${s.name} (${sizes} + 1)${keys.length ? ` · needs ${keys.join(", ")}` : ""}`;
    const option = el("option", null, label);
    option.value = s.name;
    select.append(option);
  }
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = el("script");
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(script);
  });
}

async function drawGraph() {
  const spec = $("spec").value;
  if (state.graphFor === spec) return;
  const box = $("graph");
  box.textContent = "Loading the graph…";
  try {
    if (!window.mermaid) {
      await loadScript("ui/static/vendor/mermaid.min.js");
      // LangGraph's Mermaid text brings its own light node colours: a light panel in any theme.
      window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "default" });
    }
    const { mermaid } = await getJSON(`ui/api/mermaid?spec=${encodeURIComponent(spec)}`);
    const { svg } = await window.mermaid.render(`graph-${Date.now()}`, mermaid);
    box.innerHTML = svg;
    state.graphFor = spec;
  } catch (e) {
    box.textContent = `The graph could not be drawn: ${e.message || e}`;
  }
}

async function loadThreads() {
  const { threads } = await getJSON("ui/api/threads");
  const list = $("thread-list");
  list.textContent = "";
  if (!threads.length) list.append(el("li", "muted", "No conversations yet."));
  for (const t of threads) {
    const item = el("li");
    const button = el("button", "thread");
    button.type = "button";
    button.dataset.thread = t.thread_id;
    if (t.thread_id === state.thread) button.setAttribute("aria-current", "true");
    button.append(el("span", "thread-title", t.title));
    const when = new Date(t.updated).toLocaleString();
    button.append(el("span", "thread-meta", `${t.turns} turn${t.turns === 1 ? "" : "s"} · ${when}`));
    button.addEventListener("click", () => openThread(t.thread_id));
    item.append(button);
    list.append(item);
  }
}

async function openThread(id) {
  if (state.busy) return;
  banner("");
  try {
    const { turns } = await getJSON(`ui/api/threads/${encodeURIComponent(id)}`);
    const box = $("conversation");
    box.textContent = "";
    for (const t of turns) box.append(Turn.stored(t).root);
    state.thread = id;
    history.replaceState(null, "", `#thread=${encodeURIComponent(id)}`);
    const lastSpec = turns[turns.length - 1].spec;
    if (lastSpec && specNamed(lastSpec)) $("spec").value = lastSpec;
    toggleThreads(false);
    await loadThreads();
    $("question").focus();
  } catch (e) {
    banner(`Could not open the conversation: ${e.message || e}`);
  }
}

function newThread() {
  if (state.busy) return;
  state.thread = null;
  history.replaceState(null, "", location.pathname);
  const box = $("conversation");
  box.textContent = "";
  box.append(el("p", "empty", "New conversation: ask a question."));
  loadThreads().catch(() => {});
  toggleThreads(false);
  $("question").focus();
}

function toggleThreads(open) {
  const button = $("toggle-threads");
  const show = open === undefined ? button.getAttribute("aria-expanded") !== "true" : open;
  button.setAttribute("aria-expanded", String(show));
  document.body.classList.toggle("threads-open", show);
}

// ---------------------------------------------------------------- wiring

function submit() {
  const area = $("question");
  const question = area.value.trim();
  if (!question || state.busy) return;
  area.value = "";
  ask(question);
}

async function main() {
  window.addEventListener("error", (e) => banner(`Page error: ${e.message}`));
  window.addEventListener("unhandledrejection", (e) => banner(`Page error: ${e.reason?.message || e.reason}`));
  $("ask").addEventListener("submit", (e) => {
    e.preventDefault();
    if (state.busy) state.abort?.abort();  // the button reads "Stop" while a run goes on
    else submit();
  });
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });
  $("toggle-threads").addEventListener("click", () => toggleThreads());
  $("new-thread").addEventListener("click", newThread);
  $("toggle-graph").addEventListener("click", () => {
    const panel = $("graph-panel");
    panel.hidden = !panel.hidden;
    $("toggle-graph").setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) drawGraph();
  });
  $("spec").addEventListener("change", () => { if (!$("graph-panel").hidden) drawGraph(); });
  try {
    await loadSpecs();
  } catch (e) {
    banner(`Could not load the specs: ${e.message || e}`);
    return;
  }
  loadThreads().catch((e) => banner(`Could not list conversations: ${e.message || e}`));
  const match = location.hash.match(/^#thread=(.+)$/);
  if (match) await openThread(decodeURIComponent(match[1]));
  $("question").focus();
}

main();
