/* langgraph-moa web UI: one page, no build step, no network beyond its own server.
 *
 * A run lives on the server (POST ui/api/runs -> run_id); the page only watches it
 * (GET ui/api/runs/ID/events, server-sent events with ids). So a reload, a dropped
 * connection or switching conversations loses nothing: a dropped stream is re-read from
 * the last event seen (Last-Event-ID); a reopened conversation (a reload: the address holds
 * #thread=ID) reads its running run from the thread and replays it. Only Stop cancels a run
 * (POST .../cancel); everything else the page does with a run is watching it.
 * Tokens are a preview; the `answer`, `call` and `final` events carry the authoritative text
 * and numbers, so a card is right even when its model did not stream. */
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  specs: [], thread: null, title: "", threadSpec: null, graphFor: null,
  live: null,        // the run this page watches: {runId, turn, seq, controller, ended}
  follow: true,      // keep the newest output in view while a run streams
  ours: 0,           // when the page itself last scrolled (not the user)
};
const FINAL = new Set(["aggregator", "fallback"]);
const TERMINAL = new Set(["done", "error", "review", "cancelled"]);
const BASE_TITLE = "langgraph-moa";

// ---------------------------------------------------------------- small helpers

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function button(label, cls, onClick) {
  const b = el("button", cls, label);
  b.type = "button";
  if (onClick) b.addEventListener("click", onClick);
  return b;
}

function secs(s) {
  if (s === null || s === undefined) return "–";
  return s < 10 ? `${s.toFixed(2)} s` : `${s.toFixed(1)} s`;
}

function usd(x) {
  if (x === null || x === undefined) return null;
  return x < 0.01 ? `$${x.toFixed(5)}` : `$${x.toFixed(3)}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function banner(message) {
  const b = $("banner");
  b.textContent = message;
  b.hidden = !message;
}

/* Says what happened to an action that did not do what was asked (never a silent no-op). */
function notice(message) {
  $("notice").textContent = message || "";
}

function announce(message) {
  $("live").textContent = message;
}

function unreachable() {
  return `Cannot reach the server at ${location.host}: is moa serve (or moa ui) still running?`;
}

/* `moa serve --api-key-env`: the page's API asks for a bearer token (each token has its own
 * conversations). Asked for on the first 401, kept in this browser, sent on every request. */
const TOKEN_KEY = "moa-token";

function withToken(options = {}) {
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) return options;
  return { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${token}` } };
}

async function authorizedFetch(url, options = {}) {
  let response = await fetch(url, withToken(options));
  if (response.status === 401) {
    const token = window.prompt("This server asks for an access token (moa serve --api-key-env):");
    if (token && token.trim()) {
      localStorage.setItem(TOKEN_KEY, token.trim());
      response = await fetch(url, withToken(options));
    }
  }
  return response;
}

async function api(url, options) {
  let response;
  try {
    response = await authorizedFetch(url, options);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new Error(unreachable());
  }
  if (!response.ok) throw new Error(await errorText(response));
  return response;
}

async function getJSON(url, options) {
  return (await api(url, options)).json();
}

function sendJSON(url, body, method = "POST") {
  return getJSON(url, {
    method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body.error && typeof body.error === "object") {
      const { message, field } = body.error;
      return field ? `${field}: ${message}` : String(message);
    }
    const detail = body.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
    return JSON.stringify(body);
  } catch (e) {
    return `HTTP ${response.status} ${response.statusText}`;
  }
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
window.copyText = copyText;

function copyButton(label, text) {
  const b = button(label, "copy");
  b.addEventListener("click", async () => {
    await copyText(text());
    b.textContent = "Copied";
    setTimeout(() => { b.textContent = label; }, 1500);
  });
  return b;
}

// ---------------------------------------------------------------- timers on running cards

const timers = new Map();  // span -> start (ms)
setInterval(() => {
  const now = performance.now();
  for (const [span, start] of timers) span.textContent = secs((now - start) / 1000);
}, 200);

function startTimer(span) {
  if (!timers.has(span)) timers.set(span, performance.now());
  span.hidden = false;
}

function stopTimer(span) {
  timers.delete(span);
  span.hidden = true;
}

// ---------------------------------------------------------------- a turn on the page

const STATUS_LABEL = {
  waiting: "waiting", running: "running", retrying: "retrying", done: "done", ok: "done",
  failed: "failed", timeout: "timed out", cut: "cut", fallback: "fallback", paused: "paused",
  stopped: "stopped", notrun: "not run", skipped: "skipped", cancelled: "stopped",
};
const ACTIVE = new Set(["running", "retrying"]);
const ANSWERED = new Set(["done", "fallback"]);

class Turn {
  constructor(question, layout, spec) {
    this.number = null;
    this.question = question;
    this.spec = spec || null;
    this.cards = new Map();    // proposer node -> card
    this.extras = new Map();   // ranker / judge node -> chip
    this.layers = new Map();   // layer -> {section, note, refs, extras, ranking}
    this.ranked = new Map();   // layer -> {kept: Set}
    this.failedSeen = new Set();  // nodes seen failing (the aggregator's failure is not in
    this.calledSeen = new Set();  // the state's calls when it ends the run: count it here)
    this.finalText = "";
    this.finalId = null;
    this.started = false;
    this.ended = false;
    this.root = el("article", "turn");
    this.root.setAttribute("aria-label", `Turn: ${question.slice(0, 80)}`);
    const ask = el("div", "ask-row");
    this.questionEl = el("div", "question", question);
    this.specEl = el("span", "turn-spec", "");
    ask.append(this.specEl, this.questionEl);
    this.root.append(ask);
    this.layersEl = el("div", "layers");
    this.root.append(this.layersEl);
    this.buildFinal();
    this.summaryEl = el("div", "summary");
    this.errorEl = el("div", "error");
    this.errorEl.setAttribute("role", "alert");
    this.errorEl.hidden = true;
    this.stoppedEl = el("div", "stopped-note");
    this.stoppedEl.hidden = true;
    this.tools = el("div", "turn-tools");
    this.tools.hidden = true;
    this.tools.append(
      button("Retry the synthesis", "retry-synthesis", () => retry(this, "synthesis")),
      button("Regenerate", "regenerate", () => retry(this, "turn")),
      button("Edit and resend", "edit", () => this.edit()),
    );
    this.resumeBtn = button("Resume", "resume", () => resumeRun(this, true));
    this.resumeBtn.hidden = true;
    this.tools.prepend(this.resumeBtn);
    this.root.append(this.summaryEl, this.errorEl, this.stoppedEl, this.tools);
    this.setSpec(spec);
    if (layout) this.setLayout(layout);
  }

  setSpec(spec) {
    this.spec = spec || this.spec;
    this.specEl.textContent = this.spec ? `spec ${this.spec}` : "";
  }

  setLayout(layout) {
    this.layersEl.textContent = "";
    this.cards.clear();
    this.extras.clear();
    this.layers.clear();
    layout.layers.forEach((seats, i) => {
      const section = el("section", "layer");
      section.dataset.layer = String(i + 1);
      const head = el("h3", null, `Layer ${i + 1}`);
      const note = el("span", "layer-note", "");
      head.append(note);
      const row = el("div", "cards");
      // A stored turn's layout may list its rankers and judges: chips under the cards.
      const proposers = seats.filter((seat) => !seat.role || seat.role === "proposer");
      proposers.forEach((seat) => row.append(this.card(seat).root));
      const extras = el("div", "extras");
      extras.hidden = true;
      const ranking = el("details", "ranking");
      ranking.hidden = true;
      const refs = el("details", "refs");
      refs.hidden = true;
      section.append(head, row, extras, ranking, refs);
      this.layersEl.append(section);
      this.layers.set(i + 1, { section, note, refs, extras, ranking });
      seats.filter((seat) => !proposers.includes(seat))
        .forEach((seat) => this.extra(seat.node, seat.model, seat.role, i + 1));
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
    const badge = el("span", "badge");
    badge.hidden = true;
    const timer = el("span", "timer");
    timer.hidden = true;
    const status = el("span", "status s-waiting", "waiting");
    head.append(name, badge, timer, status);
    const text = el("div", "text markdown");
    text.tabIndex = 0;
    text.setAttribute("aria-label", `Answer of ${seat.model}`);
    const reason = el("div", "reason");
    reason.hidden = true;
    const meta = el("footer", "meta", seat.model_id);
    const tools = el("div", "card-tools");
    const card = {
      root, status, text, reason, meta, badge, timer, tokenId: null, seat, raw: "",
      md: new MD.Stream(text),
    };
    const expand = button("Expand", "expand", () => {
      const open = root.classList.toggle("open");
      expand.textContent = open ? "Collapse" : "Expand";
      expand.setAttribute("aria-expanded", String(open));
    });
    expand.setAttribute("aria-expanded", "false");
    expand.setAttribute("aria-label", `Expand the answer of ${seat.model}`);
    const copy = copyButton("Copy", () => card.raw);
    copy.setAttribute("aria-label", `Copy the answer of ${seat.model}`);
    tools.append(expand, copy);
    root.append(head, text, reason, meta, tools);
    this.cards.set(seat.node, card);
    return card;
  }

  /* A ranker or early-stopping judge: a small chip under its layer's cards. */
  extra(node, model, role, layer) {
    let chip = this.extras.get(node);
    if (chip) return chip;
    const row = this.layers.get(layer)?.extras;
    if (!row) return null;
    const root = el("div", "chip");
    root.dataset.node = node;
    const status = el("span", "status s-waiting", "waiting");
    const timer = el("span", "timer");
    timer.hidden = true;
    const reason = el("span", "reason");
    reason.hidden = true;
    const meta = el("span", "meta");
    root.append(el("span", "chip-role", role === "ranker" ? "ranker" : role), el("span", "model", model || node), timer, status, meta, reason);
    row.append(root);
    row.hidden = false;
    chip = { root, status, reason, timer, meta, seat: { node, model, role, layer } };
    this.extras.set(node, chip);
    return chip;
  }

  buildFinal() {
    const root = el("section", "final");
    root.setAttribute("aria-label", "Final answer");
    const head = el("header");
    const title = el("h3", "final-title", "Answer");
    this.finalModel = el("span", "model", "");
    this.finalTimer = el("span", "timer");
    this.finalTimer.hidden = true;
    this.finalStatus = el("span", "status s-waiting", "waiting");
    this.copyBtn = copyButton("Copy", () => this.finalText);
    this.copyBtn.setAttribute("aria-label", "Copy the answer");
    this.copyBtn.disabled = true;
    head.append(title, this.finalModel, this.finalTimer, this.finalStatus, this.copyBtn);
    this.finalBody = el("div", "markdown");
    this.finalMd = new MD.Stream(this.finalBody);
    this.finalReason = el("div", "reason");
    this.finalReason.hidden = true;
    this.finalMeta = el("footer", "meta", "");
    this.finalRefs = el("details", "refs");
    this.finalRefs.hidden = true;
    root.append(head, this.finalReason, this.finalBody, this.finalMeta, this.finalRefs);
    this.finalEl = root;
    this.root.append(root);
  }

  target(node) {
    if (FINAL.has(node)) {
      return { status: this.finalStatus, reason: this.finalReason, timer: this.finalTimer };
    }
    return this.cards.get(node) || this.extras.get(node);
  }

  setStatus(node, status, reason) {
    const target = this.target(node);
    if (!target) return;
    target.status.textContent = STATUS_LABEL[status] || status;
    target.status.className = `status s-${status}`;
    if (ACTIVE.has(status)) startTimer(target.timer);
    else stopTimer(target.timer);
    if (reason !== undefined) {
      target.reason.textContent = reason || "";
      target.reason.hidden = !reason;
    }
  }

  statusOf(node) {
    const target = this.target(node);
    return target ? target.status.className.replace(/^status s-/, "") : null;
  }

  token(data) {
    if (FINAL.has(data.node)) {
      if (this.finalId !== data.id) { this.finalText = ""; this.finalId = data.id; }
      this.finalText += data.text;
      this.finalBody.setAttribute("aria-busy", "true");
      this.finalMd.set(this.finalText);
      this.copyBtn.disabled = false;
      return;
    }
    const card = this.cards.get(data.node);
    if (!card) return;
    if (card.tokenId !== data.id) { card.raw = ""; card.tokenId = data.id; }
    card.raw += data.text;
    card.md.set(card.raw);
  }

  answer(node, text) {
    const card = this.cards.get(node);
    if (!card) return;
    card.raw = text;
    card.md.set(text, true);
  }

  final(text) {
    this.finalText = text;
    this.finalMd.set(text, true);
    this.finalBody.removeAttribute("aria-busy");
    this.copyBtn.disabled = !text;
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
    this.calledSeen.add(record.node);
    if (status === "failed" || status === "timeout") this.failedSeen.add(record.node);
    const why = record.status === "ok" ? "" : record.error;
    if (record.role === "aggregator") {
      this.finalMeta.textContent = `${record.model} · ${parts.join(" · ")}`;
      this.setStatus("aggregator", status, why);
      return;
    }
    if (record.role !== "proposer" && !this.cards.has(record.node)) {
      const chip = this.extra(record.node, record.model, record.role, record.layer);
      if (!chip) return;
      chip.meta.textContent = parts.length ? parts[0] : "";
      this.setStatus(record.node, status, why);
      return;
    }
    const card = this.cards.get(record.node);
    if (!card) return;
    card.meta.textContent = parts.join(" · ");
    card.meta.title = record.model_id;
    this.setStatus(record.node, status, why);
  }

  progress(e) {
    const node = e.node;
    if (node && !FINAL.has(node) && !this.cards.has(node) && e.role && e.role !== "proposer") {
      this.extra(node, e.model, e.role, e.layer);
    }
    switch (e.event) {
      case "layer_started": {
        const layer = this.layers.get(e.layer);
        if (layer) layer.note.textContent = " · running";
        break;
      }
      case "layer_finished": {
        const layer = this.layers.get(e.layer);
        if (layer) layer.note.textContent = ` · ${e.answers}/${e.of} answered`;
        announce(`Layer ${e.layer}: ${e.answers} of ${e.of} answered.`);
        break;
      }
      case "layer_ranked":
        this.ranking(e);
        break;
      case "call_started":
        if (e.attempt > 1) this.setStatus(node, "retrying");
        else this.setStatus(node, "running", "");
        if (FINAL.has(node)) {
          this.finalModel.textContent = node === "fallback" ? `${e.model} (fallback)` : e.model;
        }
        break;
      case "call_error":
        if (e.will_retry) this.setStatus(node, "retrying", `attempt ${e.attempt}: ${e.error}`);
        break;
      case "call_failed":
        this.failedSeen.add(node);
        this.calledSeen.add(node);
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

  modelOf(node) {
    return this.cards.get(node)?.seat.model || String(node).split("/").pop();
  }

  /* A rank step: each ranker's order and the combined table (kept / dropped). Accepts the
   * `ranked` event, the `layer_ranked` progress event and a stored `rankings` record. */
  ranking(r) {
    const layer = this.layers.get(r.layer);
    if (!layer) return;
    const keptNodes = r.table ? r.table.filter((x) => x.kept).map((x) => x.node) : (r.kept || []);
    const table = r.table || (r.order || []).map((node) => ({
      node, model: this.modelOf(node), score: r.mean_rank ? r.mean_rank[node] : null,
      kept: keptNodes.includes(node),
    }));
    const rankers = Array.isArray(r.rankers) ? r.rankers : [];
    const previous = this.ranked.get(r.layer);
    if (previous && previous.full && !rankers.length) return;  // keep the fuller record
    this.ranked.set(r.layer, { kept: new Set(keptNodes), full: rankers.length > 0 });
    const box = layer.ranking;
    box.textContent = "";
    box.open = true;
    const dropped = table.filter((x) => !x.kept).map((x) => x.model || this.modelOf(x.node));
    const sum = `Ranking: kept ${table.length - dropped.length} of ${table.length}`
      + (dropped.length ? ` (dropped ${dropped.join(", ")})` : "");
    box.append(el("summary", null, sum));
    const grid = el("table", "rank-table");
    const head = el("tr");
    for (const h of ["Place", "Model", "Mean rank", "Went on"]) {
      const th = el("th", null, h);
      th.scope = "col";
      head.append(th);
    }
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    table.forEach((row, i) => {
      const tr = el("tr", row.kept ? "kept" : "dropped");
      const score = row.score === null || row.score === undefined ? "–" : Number(row.score).toFixed(2);
      tr.append(el("td", null, String(i + 1)), el("td", null, row.model || this.modelOf(row.node)),
        el("td", null, score), el("td", null, row.kept ? "kept" : "dropped"));
      tbody.append(tr);
    });
    grid.append(thead, tbody);
    box.append(grid);
    if (rankers.length) {
      const list = el("ul", "rankers");
      for (const k of rankers) {
        const order = (k.order || []).map((n) => this.modelOf(n)).join(" › ");
        const failed = k.ok === false || (!order && k.error);
        const text = failed ? `${k.model}: no usable ranking${k.error ? ` (${k.error})` : ""}` : `${k.model} ranked: ${order}`;
        list.append(el("li", null, text));
      }
      box.append(list);
    } else if (r.rankers) {
      box.append(el("p", "muted", `${r.rankers} ranker${r.rankers === 1 ? "" : "s"}${r.failed ? `, ${r.failed} failed` : ""}`));
    }
    box.hidden = false;
    for (const row of table) {
      const card = this.cards.get(row.node);
      if (!card) continue;
      card.badge.textContent = row.kept ? "kept" : "dropped";
      card.badge.className = `badge ${row.kept ? "b-kept" : "b-dropped"}`;
      card.badge.hidden = false;
      card.root.classList.toggle("dropped", !row.kept);
    }
  }

  /* Which model wrote each reference: given by the server, else the layer's answered cards
   * in spec order (only the kept ones after a rank step) when the counts agree. */
  labels(layer, refs, sources) {
    if (Array.isArray(sources) && sources.length === refs.length && sources.some((x) => x)) {
      return sources.map((x) => (x && typeof x === "object" ? x.model || x.node : x) || null);
    }
    if (refs.every((r) => r && typeof r === "object")) return refs.map((r) => r.model || r.node || null);
    const kept = this.ranked.get(layer)?.kept;
    const answered = [...this.cards.values()]
      .filter((c) => c.seat.layer === layer && (c.raw || ANSWERED.has(this.statusOf(c.seat.node))))
      .filter((c) => !kept || kept.has(c.seat.node))
      .map((c) => c.seat.model);
    return answered.length === refs.length ? answered : refs.map(() => null);
  }

  references(data) {
    const refs = data.references || [];
    const labels = this.labels(data.layer, refs, data.sources);
    const fill = (details, label) => {
      details.textContent = "";
      details.append(el("summary", null, `${label} (${refs.length})`));
      const list = el("ol");
      refs.forEach((r, i) => {
        const item = el("li");
        if (labels[i]) item.append(el("strong", "ref-model", `${labels[i]}: `));
        item.append(document.createTextNode(typeof r === "string" ? r : (r.text || "")));
        list.append(item);
      });
      details.append(list);
      details.hidden = false;
    };
    const layer = this.layers.get(data.layer);
    const last = data.layer === this.layers.size;
    if (layer && !last) fill(layer.refs, `What layer ${data.layer + 1} read`);
    if (last || !layer) fill(this.finalRefs, "References the aggregator read");
    if (data.fallback_reason) this.setStatus("aggregator", "fallback", data.fallback_reason);
  }

  summary(s, fallbackReason) {
    if (!s) return;
    const failed = Math.max(s.failed || 0, this.failedSeen.size);
    const calls = Math.max(s.calls || 0, s.calls + this.failedSeen.size - (s.failed || 0), this.calledSeen.size);
    const parts = [
      `${calls} call${calls === 1 ? "" : "s"}`,
      `${failed} failed`,
      `${s.cut} cut`,
      `${s.input_tokens} in / ${s.output_tokens} out tokens`,
      s.cost_usd === null || s.cost_usd === undefined ? "cost unknown" : usd(s.cost_usd),
      `wall ${secs(s.wall_s)} vs critical path ${secs(s.critical_path_s)}`,
    ];
    this.summaryEl.textContent = parts.join(" · ");
    if (fallbackReason) this.summaryEl.textContent += ` · fallback answered: ${fallbackReason}`;
  }

  /* The run ended without an answer: running cards say how (failed or stopped), cards that
   * never ran say "not run" (muted, not an error), layer notes stop saying "running". */
  settle(how) {
    for (const card of this.cards.values()) card.md.set(card.raw, true);  // no frame pending
    for (const [node, target] of [...this.cards, ...this.extras]) {
      const s = this.statusOf(node);
      if (s === "waiting") this.setStatus(target.seat.node, "notrun", "");
      else if (ACTIVE.has(s)) this.setStatus(target.seat.node, how);
    }
    const f = this.statusOf("aggregator");
    if (f === "waiting") this.setStatus("aggregator", this.finalText ? how : "notrun");
    else if (ACTIVE.has(f) || f === "paused") this.setStatus("aggregator", how);
    for (const layer of this.layers.values()) {
      if (layer.note.textContent === " · running") layer.note.textContent = ` · ${how}`;
    }
    this.finalBody.removeAttribute("aria-busy");
  }

  error(message) {
    this.errorEl.textContent = message;
    this.errorEl.hidden = false;
    this.settle("failed");
    this.finish();
  }

  cancelled(data) {
    const partial = (data && data.partial) || {};
    for (const [node, text] of Object.entries(partial.answers || {})) this.answer(node, text);
    for (const record of partial.calls || []) this.call(record);
    if (data && data.summary) this.summary(data.summary);
    this.settle("stopped");
    this.stoppedEl.textContent = "Stopped: the run was cancelled on the server. What had finished is kept: Resume goes on from there, Regenerate runs the turn again.";
    this.stoppedEl.hidden = false;
    announce("Stopped.");
    this.finish();
  }

  done(data) {
    this.final(data.answer);
    this.setStatus("aggregator", data.fallback_reason ? "fallback" : "done");
    this.summary(data.summary, data.fallback_reason);
    announce("The answer is ready.");
    this.finish();
  }

  finish() {
    this.ended = true;
    this.tools.hidden = false;
    this.resumeBtn.hidden = this.errorEl.hidden && this.stoppedEl.hidden;
    // Retrying the synthesis needs the references it read: only once there are some.
    this.tools.querySelector(".retry-synthesis").hidden = this.finalRefs.hidden;
    this.root.querySelector(".review")?.remove();
  }

  /* The same turn goes on (a review continued, a stopped turn resumed). */
  reopen() {
    this.ended = false;
    this.errorEl.hidden = true;
    this.stoppedEl.hidden = true;
    this.tools.hidden = true;
  }

  resetFinal() {
    this.finalText = "";
    this.finalId = null;
    this.finalBody.textContent = "";
    this.finalMd = new MD.Stream(this.finalBody);
    this.finalMeta.textContent = "";
    this.errorEl.hidden = true;
    this.stoppedEl.hidden = true;
    this.tools.hidden = true;
    this.ended = false;
    this.setStatus("aggregator", "waiting", "");
  }

  /* Edit the question in place, then regenerate the turn with it. */
  edit() {
    if (state.live) { notice("A run is going: wait for it or Stop it before editing a question."); return; }
    if (this.root.querySelector(".edit-box")) return;
    const box = el("div", "edit-box");
    const area = el("textarea");
    area.value = this.question;
    area.rows = 3;
    area.setAttribute("aria-label", "Edited question");
    const send = button("Resend", "resend", () => {
      const text = area.value.trim();
      if (!text) { notice("The edited question is empty."); return; }
      box.remove();
      this.questionEl.hidden = false;
      retry(this, "turn", text);
    });
    const cancel = button("Cancel", "cancel-edit", () => { box.remove(); this.questionEl.hidden = false; });
    box.append(area, el("div", "row", null));
    box.lastChild.append(send, cancel);
    this.questionEl.hidden = true;
    this.questionEl.after(box);
    area.focus();
  }

  /* The run paused before the aggregator: show what it will read, editable, and go on. */
  review(references, go) {
    this.root.querySelector(".review")?.remove();
    this.setStatus("aggregator", "paused", "");
    this.ended = true;
    const box = el("div", "review");
    box.append(el("p", null, "Paused for review: edit what the aggregator will read, then continue."));
    const texts = references.map((r) => (typeof r === "string" ? r : r.text || ""));
    const labels = this.labels(this.layers.size, references);
    const areas = texts.map((text, i) => {
      const area = el("textarea");
      area.value = text;
      area.rows = 3;
      area.setAttribute("aria-label", `Reference ${i + 1}${labels[i] ? ` (${labels[i]})` : ""}`);
      box.append(area);
      return area;
    });
    const next = button("Continue", "continue", () => {
      if (state.live) { notice("A run is going: wait for it or Stop it first."); return; }
      const edited = areas.map((a) => a.value);
      const same = edited.every((text, i) => text === texts[i]);
      box.remove();
      go(same ? true : edited);
    });
    box.append(next);
    this.finalBody.before(box);
    next.focus({ preventScroll: true });
  }

  handle(name, data) {
    this.started = true;
    switch (name) {
      case "progress": return this.progress(data);
      case "token": return this.token(data);
      case "answer": return this.answer(data.node, data.text);
      case "call": return this.call(data);
      case "references": return this.references(data);
      case "ranked": return this.ranking(data);
      case "final": return this.final(data.text);
      case "done": return this.done(data);
      case "cancelled": return this.cancelled(data);
      case "error": {
        const partial = data.partial || {};
        for (const [node, text] of Object.entries(partial.answers || {})) this.answer(node, text);
        for (const record of partial.calls || []) this.call(record);
        this.summary(data.summary);
        announce(`The run failed: ${data.message}`);
        return this.error(data.message);
      }
      default: return undefined;
    }
  }

  /* A stored turn (GET ui/api/threads/ID), drawn with the same handlers as a live one. */
  static stored(t) {
    const turn = new Turn(t.question, t.layout, t.spec);
    turn.number = t.turn ?? null;
    turn.started = true;
    for (const record of t.calls || []) turn.call(record);
    for (const [node, text] of Object.entries(t.answers || {})) turn.answer(node, text);
    const answered = new Map();
    for (const c of t.calls || []) {
      if (c.role !== "proposer") continue;
      const [n, of] = answered.get(c.layer) || [0, 0];
      answered.set(c.layer, [n + (c.status === "ok" || c.status === "fallback" ? 1 : 0), of + 1]);
    }
    for (const [layer, [n, of]] of answered) {
      const row = turn.layers.get(layer);
      if (row) row.note.textContent = ` · ${n}/${of} answered`;
    }
    for (const r of t.rankings || t.ranking || []) turn.ranking(r);
    if (t.references && t.references.length) {
      turn.references({ layer: turn.layers.size, references: t.references, sources: t.sources });
    }
    if (t.answer) {
      turn.final(t.answer);
      turn.setStatus("aggregator", t.fallback_reason ? "fallback" : "done");
    }
    const status = t.status || (t.error ? "failed" : "done");
    if (status !== "running" && status !== "paused") turn.summary(t.summary, t.fallback_reason);
    if (status === "cancelled") turn.cancelled({});
    else if (status === "running" || status === "paused") turn.tools.hidden = true;
    else if (t.error) turn.error(t.error);
    else turn.finish();
    return turn;
  }
}

// ---------------------------------------------------------------- following the stream

function nearBottom() {
  const doc = document.documentElement;
  return window.innerHeight + window.scrollY >= doc.scrollHeight - 96;
}

function updateJump() {
  $("jump").hidden = !state.live || state.follow || nearBottom();
}

/* While a run streams and the user has not scrolled away: keep its newest output in view
 * (at most once per frame: reading the layout per token would force a reflow per token). */
let keepUpPending = false;
function keepUp() {
  if (keepUpPending) return;
  keepUpPending = true;
  requestAnimationFrame(() => {
    keepUpPending = false;
    if (state.live && state.follow && !nearBottom()) {
      state.ours = performance.now();
      window.scrollTo({ top: document.documentElement.scrollHeight, behavior: "instant" });
    }
    updateJump();
  });
}

/* The user scrolls up (wheel, touch, keys): stop following until they come back down. */
function scrolledAway() {
  state.follow = false;
  updateJump();
}

function jumpToLatest() {
  state.follow = true;
  state.ours = performance.now();
  window.scrollTo({ top: document.documentElement.scrollHeight, behavior: "instant" });
  updateJump();
}

/* The answer is done: its header in view (at the top when it is longer than the screen). */
function showAnswer(turn) {
  if (!state.follow) return;
  const box = turn.finalEl.getBoundingClientRect();
  const top = document.querySelector(".top").getBoundingClientRect().bottom;
  const bottom = $("ask").getBoundingClientRect().top;
  if (box.top < top || box.top > bottom - 60) {
    state.ours = performance.now();
    turn.finalEl.scrollIntoView({ block: box.height < bottom - top ? "end" : "start", behavior: "instant" });
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
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      let id = null;
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        else if (line.startsWith("id:")) id = line.slice(3).trim();
      }
      if (data.length) yield { name, id, data: JSON.parse(data.join("\n")) };
    }
  }
}

function setBusy(busy) {
  $("stop").hidden = !busy;
  $("stop").disabled = false;
  $("stop").textContent = "Stop";
  $("send").classList.toggle("waiting", busy);
  document.title = busy ? `● ${state.title || BASE_TITLE} (running)` : (state.title || BASE_TITLE);
  for (const list of document.querySelectorAll(".turn-tools")) {
    list.classList.toggle("locked", busy);
    for (const b of list.querySelectorAll("button")) b.setAttribute("aria-disabled", String(busy));
  }
  updateJump();
}

/* A plain download link cannot carry the token: with one, fetch the export and save it. */
async function exportWithToken(event) {
  if (!localStorage.getItem(TOKEN_KEY)) return;  // the link downloads it as it is
  event.preventDefault();
  const link = event.currentTarget;
  try {
    const response = await api(link.href);
    const name = (response.headers.get("Content-Disposition") || "").match(/filename="?([^";]+)/);
    const save = document.createElement("a");
    save.href = URL.createObjectURL(await response.blob());
    save.download = name ? name[1] : "conversation";
    save.click();
    setTimeout(() => URL.revokeObjectURL(save.href), 10_000);
  } catch (e) {
    notice(`Export failed: ${e.message}`);
  }
}

function setThread(id) {
  state.thread = id;
  if (id) history.replaceState(null, "", `#thread=${encodeURIComponent(id)}`);
  const bar = $("conv-bar");
  bar.hidden = !id;
  if (id) {
    const base = `ui/api/threads/${encodeURIComponent(id)}/export?format=`;
    $("export-md").href = `${base}md`;
    $("export-json").href = `${base}json`;
  }
}

function setTitle(title) {
  state.title = title || "";
  $("conv-title").textContent = title || "";
  if (!state.live) document.title = title || BASE_TITLE;
}

function clearEmpty() {
  for (const p of $("conversation").querySelectorAll(".empty")) p.remove();
}

function addTurn(turn) {
  clearEmpty();
  $("conversation").append(turn.root);
  state.follow = true;
  state.ours = performance.now();
  turn.root.scrollIntoView({ block: "start", behavior: "instant" });
}

async function ask(question) {
  const spec = $("spec").value;
  const turn = new Turn(question, specNamed(spec)?.layout, spec);
  addTurn(turn);
  const ok = await start(turn, "ui/api/runs", { spec, question, thread_id: state.thread || undefined });
  if (!ok) {
    turn.root.remove();
    if (!$("conversation").querySelector(".turn")) $("conversation").append(el("p", "empty", "Ask a question."));
    $("question").value = question;  // nothing was sent: the question is not lost
  }
  return ok;
}

/* POST a run (or a retry, or a resume); returns whether it started. */
async function start(turn, url, body) {
  const controller = new AbortController();
  state.live = { runId: null, turn, seq: -1, controller, ended: false };
  setBusy(true);
  announce("Run started.");
  let response;
  try {
    response = await api(url, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body), signal: controller.signal,
    });
  } catch (e) {
    state.live = null;
    setBusy(false);
    banner(`The run did not start: ${e.message || e}`);
    return false;
  }
  banner("");
  const info = await response.json();
  if (info.thread_id) setThread(info.thread_id);
  if (info.turn !== undefined) turn.number = info.turn;
  if (!state.title) setTitle(turn.question.slice(0, 80));
  state.live = null;
  attach(info.run_id, turn, -1);
  loadThreads().catch(() => {});
  return true;
}

/* Watch run `runId` from event `after` on, reconnecting (Last-Event-ID) when the connection
 * drops; ends on a terminal event, on Stop's `cancelled`, or when the page detaches. */
async function attach(runId, turn, after) {
  const live = { runId, turn, seq: after, controller: new AbortController(), ended: false };
  state.live = live;
  setBusy(true);
  let tries = 0;
  while (!live.ended && state.live === live) {
    try {
      const headers = live.seq >= 0 ? { "Last-Event-ID": String(live.seq) } : {};
      const response = await authorizedFetch(`ui/api/runs/${encodeURIComponent(runId)}/events`, {
        headers, signal: live.controller.signal,
      });
      if (response.status === 404) {  // the run is over and forgotten: the thread has it
        live.ended = true;
        notice("");
        if (state.live === live) { state.live = null; setBusy(false); }
        if (state.thread) await openThread(state.thread, { quiet: true });
        return;
      }
      if (!response.ok) throw new Error(await errorText(response));
      if (tries) notice("Reconnected to the run.");
      tries = 0;
      await consume(live, response);
      if (!live.ended) throw new Error("the event stream closed before the run ended");
    } catch (e) {
      if (live.controller.signal.aborted) break;
      tries += 1;
      if (tries > 12) {
        turn.error(`Lost the connection to the run (${e.message || e}); it may still be going on the server: reload the page to see it.`);
        break;
      }
      const why = e instanceof TypeError ? unreachable() : (e.message || String(e));
      notice(`Connection to the run lost (${why}); reconnecting…`);
      await sleep(Math.min(400 * 2 ** tries, 4000));
    }
  }
  if (state.live === live) {
    state.live = null;
    setBusy(false);
    loadThreads().catch(() => {});
  }
}

async function consume(live, response) {
  for await (const ev of sseEvents(response)) {
    if (state.live !== live) return;
    if (ev.id !== null && ev.id !== "") live.seq = Number(ev.id);
    dispatch(live, ev.name, ev.data);
    if (TERMINAL.has(ev.name)) {
      // Free the page now, in the same task that showed the end (closing the stream may
      // take a moment): a click on Regenerate right after the summary is not ignored.
      live.ended = true;
      if (state.live === live) {
        state.live = null;
        setBusy(false);
        loadThreads().catch(() => {});
      }
      return;
    }
  }
}

function dispatch(live, name, data) {
  const turn = live.turn;
  if (name === "run") {
    if (data.thread_id) setThread(data.thread_id);
    if (data.turn !== undefined) turn.number = data.turn;
    turn.setSpec(data.spec);
    if (data.spec && specNamed(data.spec)) {  // a re-attached run: its spec is the thread's
      state.threadSpec = data.spec;
      $("spec").value = data.spec;
    }
    if (!data.resumed && !turn.started && data.layout) turn.setLayout(data.layout);
    turn.started = true;
    notice("");
  } else if (name === "review") {
    turn.review(data.references, (decision) => resumeRun(turn, decision));
    announce("Paused for review.");
  } else {
    const firstFinal = name === "token" && FINAL.has(data.node) && !turn.finalText;
    turn.handle(name, data);
    if (firstFinal) announce("The answer is being written.");
  }
  keepUp();
  if (name === "done") showAnswer(turn);
}

/* Continue a turn paused for review: its cards stay, the aggregator's events follow. */
async function resumeRun(turn, decision) {
  if (state.live) { notice("A run is going: wait for it or Stop it first."); return; }
  const spec = turn.spec || $("spec").value;
  turn.reopen();
  const ok = await start(turn, "ui/api/runs", { spec, thread_id: state.thread, resume: decision });
  if (!ok) turn.tools.hidden = false;
}

async function stop() {
  const live = state.live;
  if (!live) { notice("Nothing is running."); return; }
  // (Stop appears left of Send, so a double-click on Send never lands on it.)
  $("stop").disabled = true;
  $("stop").textContent = "Stopping…";
  if (!live.runId) { notice("The run is starting: Stop again in a moment."); $("stop").disabled = false; $("stop").textContent = "Stop"; return; }
  try {
    await sendJSON(`ui/api/runs/${encodeURIComponent(live.runId)}/cancel`, {});
  } catch (e) {
    notice(`Stop did not reach the run: ${e.message || e}`);
    $("stop").disabled = false;
    $("stop").textContent = "Stop";
  }
}

/* Leave the run to the server (switching conversations): it goes on, the list shows it. */
function detach() {
  const live = state.live;
  if (!live) return;
  state.live = null;
  live.controller.abort();
  setBusy(false);
  notice("The run goes on on the server: reopen its conversation to follow it.");
  return true;
}

async function retry(turn, what, question) {
  if (state.live) { notice("A run is going: wait for it or Stop it first."); return; }
  if (!state.thread || turn.number === null) { notice("This turn cannot be retried: it was never stored."); return; }
  const body = { turn: turn.number, what };
  if (question) body.question = question;
  const url = `ui/api/threads/${encodeURIComponent(state.thread)}/retry`;
  if (what === "synthesis") {
    turn.resetFinal();
    const ok = await start(turn, url, body);
    if (!ok) turn.finish();
    return;
  }
  const fresh = new Turn(question || turn.question, specNamed(turn.spec)?.layout || null, turn.spec);
  const later = [];
  for (let n = turn.root; n; n = n.nextElementSibling) later.push(n);
  later.forEach((n) => { n.hidden = true; });
  addTurn(fresh);
  const ok = await start(fresh, url, body);
  if (ok) later.forEach((n) => n.remove());
  else { fresh.root.remove(); later.forEach((n) => { n.hidden = false; }); }
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
    const missing = s.configured === false || Object.keys(s.missing_keys || {}).length > 0;
    const label = `${s.name} (${sizes} + 1)${missing ? " · not configured on the server" : ""}`;
    const option = el("option", null, label);
    option.value = s.name;
    select.append(option);
  }
}

async function drawGraph() {
  const spec = $("spec").value;
  if (state.graphFor === spec) return;
  const box = $("graph");
  box.textContent = "Loading the graph…";
  try {
    const { mermaid } = await getJSON(`ui/api/mermaid?spec=${encodeURIComponent(spec)}`);
    await MD.loadMermaid();
    const { svg } = await window.mermaid.render(`graph-${Date.now()}`, mermaid);
    box.innerHTML = svg;
    state.graphFor = spec;
  } catch (e) {
    box.textContent = `The graph could not be drawn: ${e.message || e}`;
  }
}

async function loadThreads() {
  const q = $("thread-search").value.trim();
  const { threads } = await getJSON(`ui/api/threads${q ? `?q=${encodeURIComponent(q)}` : ""}`);
  const shown = threads;  // the server searches titles and turns (?q=)
  const list = $("thread-list");
  list.textContent = "";
  if (!shown.length) list.append(el("li", "muted", q ? `No conversation matches “${q}”.` : "No conversations yet."));
  for (const t of shown) {
    const item = el("li");
    const b = button("", "thread", () => openThread(t.thread_id));
    b.dataset.thread = t.thread_id;
    if (t.thread_id === state.thread) b.setAttribute("aria-current", "true");
    b.append(el("span", "thread-title", t.title));
    const when = t.updated ? new Date(t.updated).toLocaleString() : "";
    const meta = `${t.turns} turn${t.turns === 1 ? "" : "s"}${when ? ` · ${when}` : ""}`;
    b.append(el("span", "thread-meta", meta));
    if (t.running) b.append(el("span", "thread-running", "● running"));
    item.append(b);
    list.append(item);
  }
}

async function openThread(id, options = {}) {
  if (state.live && !options.quiet) {
    detach();
  }
  if (!options.quiet) banner("");
  try {
    const data = await getJSON(`ui/api/threads/${encodeURIComponent(id)}`);
    const turns = data.turns || [];
    const box = $("conversation");
    box.textContent = "";
    const drawn = turns.map((t) => Turn.stored(t));
    drawn.forEach((turn) => box.append(turn.root));
    if (!drawn.length) box.append(el("p", "empty", "This conversation has no turns yet."));
    setThread(id);
    setTitle(data.title || (turns[0] ? turns[0].question.slice(0, 80) : ""));
    const lastSpec = data.spec || turns[turns.length - 1]?.spec;
    state.threadSpec = lastSpec || null;
    if (lastSpec && specNamed(lastSpec)) $("spec").value = lastSpec;
    toggleThreads(false);
    loadThreads().catch(() => {});
    const last = drawn[drawn.length - 1];
    if (data.paused && !data.running) {
      const turn = drawn.find((t) => t.number === data.paused.turn) || last;
      if (turn) turn.review(data.paused.references || [], (decision) => resumeRun(turn, decision));
    }
    const running = data.running;
    if (running) {
      let turn = drawn.find((t) => t.number === running.turn);
      if (!turn) {
        const question = running.question || "";
        turn = new Turn(question, specNamed(lastSpec)?.layout, lastSpec);
        turn.number = running.turn;
        box.append(turn.root);
      }
      turn.reopen();
      turn.summaryEl.textContent = "";
      attach(running.run_id, turn, -1);
    }
    if (last) {
      state.follow = true;
      state.ours = performance.now();
      last.root.scrollIntoView({ block: "start", behavior: "instant" });
    }
    if (!options.quiet) $("question").focus({ preventScroll: true });
  } catch (e) {
    banner(`Could not open the conversation: ${e.message || e}`);
  }
}

function newThread() {
  if (state.live) detach();
  state.thread = null;
  state.threadSpec = null;
  history.replaceState(null, "", location.pathname);
  setThread(null);
  setTitle("");
  const box = $("conversation");
  box.textContent = "";
  box.append(el("p", "empty", "New conversation: ask a question."));
  loadThreads().catch(() => {});
  toggleThreads(false);
  $("question").focus();
}

function drawerMode() {
  return getComputedStyle($("toggle-threads")).display !== "none";
}

function toggleThreads(open) {
  const toggle = $("toggle-threads");
  const show = open === undefined ? toggle.getAttribute("aria-expanded") !== "true" : open;
  const was = document.body.classList.contains("threads-open");
  toggle.setAttribute("aria-expanded", String(show));
  document.body.classList.toggle("threads-open", show);
  $("drawer-backdrop").hidden = !show;
  // On a phone the open drawer is modal: the page behind it takes no focus and no taps.
  const modal = show && drawerMode();
  for (const behind of [$("main"), document.querySelector(".top"), document.querySelector(".skip")]) {
    behind.inert = modal;
  }
  if (modal) $("new-thread").focus();
  else if (was && !show && drawerMode()) toggle.focus({ preventScroll: true });
}

async function rename() {
  if (!state.thread) return;
  const bar = $("conv-bar");
  if (bar.querySelector(".rename-box")) return;
  const box = el("form", "rename-box");
  const input = el("input");
  input.value = state.title;
  input.maxLength = 200;
  input.setAttribute("aria-label", "Conversation title");
  const save = el("button", null, "Save");
  save.type = "submit";
  const cancel = button("Cancel", null, () => { box.remove(); $("conv-title").hidden = false; });
  box.append(input, save, cancel);
  box.addEventListener("submit", async (e) => {
    e.preventDefault();
    const title = input.value.trim();
    if (!title) { notice("A title cannot be empty."); return; }
    try {
      await sendJSON(`ui/api/threads/${encodeURIComponent(state.thread)}`, { title }, "PATCH");
      setTitle(title);
      box.remove();
      $("conv-title").hidden = false;
      notice("Renamed.");
      loadThreads().catch(() => {});
    } catch (err) {
      notice(`Could not rename: ${err.message || err}`);
    }
  });
  $("conv-title").hidden = true;
  $("conv-title").after(box);
  input.focus();
  input.select();
}

let deleteArmed = null;
async function deleteThread() {
  if (!state.thread) return;
  const b = $("delete");
  if (!deleteArmed) {
    b.textContent = "Really delete?";
    b.classList.add("armed");
    deleteArmed = setTimeout(() => { b.textContent = "Delete"; b.classList.remove("armed"); deleteArmed = null; }, 4000);
    return;
  }
  clearTimeout(deleteArmed);
  deleteArmed = null;
  b.textContent = "Delete";
  b.classList.remove("armed");
  try {
    await api(`ui/api/threads/${encodeURIComponent(state.thread)}`, { method: "DELETE" });
    notice("Conversation deleted.");
    newThread();
    notice("Conversation deleted.");
  } catch (e) {
    notice(`Could not delete: ${e.message || e}`);
  }
}

// ---------------------------------------------------------------- wiring

function submit() {
  const area = $("question");
  const question = area.value.trim();
  if (!question) { notice("Type a question first."); return; }
  if (state.live) { notice("A run is going: wait for its answer or Stop it (Esc)."); return; }
  const spec = $("spec").value;
  if (state.thread && state.threadSpec && spec !== state.threadSpec) {
    announce(`This turn uses spec ${spec}; the conversation used ${state.threadSpec} before.`);
  }
  notice("");
  area.value = "";
  state.threadSpec = spec;
  ask(question);
}

async function main() {
  window.addEventListener("error", (e) => banner(`Page error: ${e.message}`));
  window.addEventListener("unhandledrejection", (e) => banner(`Page error: ${e.reason?.message || e.reason}`));
  $("ask").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  $("stop").addEventListener("click", stop);
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    if (document.body.classList.contains("threads-open")) { toggleThreads(false); return; }
    if (state.live) { e.preventDefault(); stop(); }
  });
  $("toggle-threads").addEventListener("click", () => toggleThreads());
  $("close-threads").addEventListener("click", () => toggleThreads(false));
  // Rotated or resized out of the phone layout: no drawer left open over an inert page.
  matchMedia("(max-width: 760px)").addEventListener("change", () => toggleThreads(false));
  $("drawer-backdrop").addEventListener("click", () => toggleThreads(false));
  $("new-thread").addEventListener("click", newThread);
  $("rename").addEventListener("click", rename);
  $("delete").addEventListener("click", deleteThread);
  for (const id of ["export-md", "export-json"]) $(id).addEventListener("click", exportWithToken);
  $("jump").addEventListener("click", jumpToLatest);
  let searching = null;
  $("thread-search").addEventListener("input", () => {
    clearTimeout(searching);
    searching = setTimeout(() => loadThreads().catch((e) => notice(`Search failed: ${e.message || e}`)), 200);
  });
  window.addEventListener("scroll", () => {
    if (nearBottom()) state.follow = true;
    else if (performance.now() - state.ours > 150) state.follow = false;
    updateJump();
  }, { passive: true });
  window.addEventListener("wheel", (e) => { if (e.deltaY < 0) scrolledAway(); }, { passive: true });
  window.addEventListener("touchmove", () => { if (!nearBottom()) scrolledAway(); }, { passive: true });
  document.addEventListener("keydown", (e) => {
    const typing = /^(TEXTAREA|INPUT|SELECT)$/.test(document.activeElement?.tagName || "");
    if (!typing && ["PageUp", "ArrowUp", "Home"].includes(e.key)) scrolledAway();
  });
  document.querySelector(".skip").addEventListener("click", (e) => {
    e.preventDefault();  // keep the #thread= address: focus the question without navigating
    $("question").focus();
  });
  $("toggle-graph").addEventListener("click", () => {
    const panel = $("graph-panel");
    panel.hidden = !panel.hidden;
    $("toggle-graph").setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) drawGraph();
  });
  $("spec").addEventListener("change", () => {
    const spec = $("spec").value;
    if (state.thread && state.threadSpec && spec !== state.threadSpec) {
      notice(`The next turn uses spec ${spec}; earlier turns of this conversation used ${state.threadSpec}.`);
    } else {
      notice("");
    }
    if (!$("graph-panel").hidden) drawGraph();
  });
  try {
    await loadSpecs();
  } catch (e) {
    banner(`Could not load the specs: ${e.message || e}`);
    return;
  }
  loadThreads().catch((e) => banner(`Could not list conversations: ${e.message || e}`));
  const match = location.hash.match(/^#thread=(.+)$/);
  if (match) await openThread(decodeURIComponent(match[1]));  // a reload re-attaches its run
  $("question").focus({ preventScroll: true });
}

main();
