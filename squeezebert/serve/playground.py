"""The web playground served at ``/``: one self-contained page (no CDN, no external file), kept as a Python string
so it ships inside the package without package-data settings. It asks ``/v1/info`` which endpoints the model has,
and renders results with ``textContent`` only (user text is never parsed as HTML). When the server needs an API
key (a 401), the page asks for it and sends it as ``Authorization: Bearer``; it keeps it for the browser tab only
(``sessionStorage``)."""

PLAYGROUND_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>squeezebert playground</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0; background: #f5f6f8; color: #1d2330; }
  main { max-width: 860px; margin: 0 auto; padding: 20px; }
  h1 { font-size: 22px; margin: 4px 0 2px; }
  #model { color: #5a6375; font-size: 13px; margin-bottom: 14px; }
  .card { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: 14px 16px; margin-bottom: 14px; }
  label { display: block; font-weight: 600; font-size: 13px; margin: 8px 0 4px; }
  textarea, select, input { width: 100%; box-sizing: border-box; font: inherit; padding: 7px 9px; border: 1px solid #c5cbd6;
                     border-radius: 6px; background: #fff; }
  textarea { min-height: 64px; resize: vertical; }
  select { width: auto; min-width: 240px; }
  #f-key input { width: 320px; }
  #f-key button { margin: 0 0 0 8px; padding: 7px 14px; }
  button { font: inherit; font-weight: 600; padding: 8px 20px; margin-top: 12px; border: 0; border-radius: 6px;
           background: #2f5fd0; color: #fff; cursor: pointer; }
  button:disabled { background: #8ea5dc; cursor: wait; }
  .hint { color: #6b7486; font-size: 12px; margin-left: 10px; }
  #latency { font-size: 13px; color: #3c4558; margin-bottom: 8px; }
  .bar { display: flex; align-items: center; gap: 10px; margin: 5px 0; }
  .bar .name { width: 160px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .bar .track { flex: 1; background: #e8ebf1; border-radius: 4px; height: 16px; }
  .bar .fill { background: #2f5fd0; height: 16px; border-radius: 4px; }
  .bar .val { width: 60px; text-align: right; font-variant-numeric: tabular-nums; }
  .best .name { font-weight: 700; }
  .text { white-space: pre-wrap; padding: 8px; background: #fafbfc; border-radius: 6px; border: 1px solid #eceef3; }
  mark { background: #ffe58a; border-radius: 3px; padding: 0 2px; }
  mark sub { font-size: 10px; color: #7a5b00; margin-left: 2px; }
  table { border-collapse: collapse; margin-top: 8px; font-size: 13px; }
  td, th { border-bottom: 1px solid #eceef3; padding: 3px 10px 3px 0; text-align: left; }
  .error { color: #a61b1b; background: #fdecec; border: 1px solid #f2b8b8; border-radius: 6px; padding: 8px; }
  .flag { color: #8a5a00; font-size: 12px; }
  .hidden { display: none; }
  code { font-size: 12px; }
</style>
</head>
<body>
<main>
  <h1>squeezebert playground</h1>
  <div id="model">loading model info&hellip;</div>
  <div class="card hidden" id="f-key"><label for="key">API key</label>
    <input id="key" type="password" autocomplete="off" placeholder="this server needs an API key"><button
      id="use-key">Use key</button></div>
  <div class="card">
    <label for="task">Task</label>
    <select id="task"></select>
    <div id="f-text"><label for="text">Text</label>
      <textarea id="text">The movie was a delight from start to finish.</textarea></div>
    <div id="f-pair" class="hidden"><label for="pair">Text pair (optional)</label>
      <textarea id="pair" placeholder="a second text, for pair tasks such as paraphrase or entailment"></textarea></div>
    <div id="f-question" class="hidden"><label for="question">Question</label>
      <textarea id="question">Where does John live?</textarea></div>
    <div id="f-context" class="hidden"><label for="context">Context</label>
      <textarea id="context">John lives in Paris, the capital of France.</textarea></div>
    <button id="run">Run</button><span class="hint">Ctrl+Enter</span>
  </div>
  <div class="card" id="out-card">
    <div id="latency">No request yet.</div>
    <div id="output"></div>
  </div>
  <div id="links" style="font-size:12px;color:#6b7486">API docs: <a href="/docs">/docs</a> &middot;
    <a href="/metrics">/metrics</a> &middot; <a href="/readyz">/readyz</a></div>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const NAMES = {"text-classification": "Classify", "token-classification": "Entities (token classification)",
               "question-answering": "Question answering", "feature-extraction": "Embeddings"};
const FIELDS = {"text-classification": ["text", "pair"], "token-classification": ["text"],
                "question-answering": ["question", "context"], "feature-extraction": ["text"]};
let endpoints = {};
const KEY_STORE = "squeezebert-api-key";

function auth() {  // the key, when the server asked for one (sent as the OpenAI and HF clients send it)
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? {"Authorization": "Bearer " + key} : {};
}

function askForKey(message) {
  $("f-key").classList.remove("hidden");
  $("model").textContent = message;
  $("key").focus();
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function showFields() {
  const shown = FIELDS[$("task").value] || [];
  for (const f of ["text", "pair", "question", "context"]) $("f-" + f).classList.toggle("hidden", !shown.includes(f));
}

function bar(name, value, best) {
  const row = el("div", "bar" + (best ? " best" : ""));
  row.appendChild(el("span", "name", name));
  const track = el("div", "track"), fill = el("div", "fill");
  fill.style.width = (Math.max(0, Math.min(1, value)) * 100).toFixed(1) + "%";
  track.appendChild(fill);
  row.appendChild(track);
  row.appendChild(el("span", "val", value.toFixed(3)));
  return row;
}

function highlighted(text, spans) {  // spans: [{start, end, tag}] sorted, non-overlapping
  const box = el("div", "text");
  let at = 0;
  for (const s of spans) {
    if (s.start < at) continue;
    box.appendChild(document.createTextNode(text.slice(at, s.start)));
    const m = el("mark", "", text.slice(s.start, s.end));
    if (s.tag) m.appendChild(el("sub", "", s.tag));
    box.appendChild(m);
    at = s.end;
  }
  box.appendChild(document.createTextNode(text.slice(at)));
  return box;
}

function render(task, result, sent) {
  const out = $("output");
  if (result.truncated) out.appendChild(el("div", "flag", "Input was truncated to the server's limits."));
  if (task === "text-classification") {
    if (result.scores) {
      const items = Object.entries(result.scores).sort((a, b) => b[1] - a[1]);
      for (const [name, p] of items) out.appendChild(bar(name, p, name === result.label));
    } else {
      out.appendChild(el("div", "", "score: " + JSON.stringify(result.score)));
    }
  } else if (task === "token-classification") {
    const spans = result.entities.map((e) => ({start: e.start, end: e.end, tag: e.entity}));
    out.appendChild(highlighted(sent.text, spans));
    if (!result.entities.length) out.appendChild(el("div", "hint", "no entities found"));
    else {
      const table = el("table"), head = el("tr");
      for (const h of ["entity", "word", "start", "end", "score"]) head.appendChild(el("th", "", h));
      table.appendChild(head);
      for (const e of result.entities) {
        const tr = el("tr");
        for (const v of [e.entity, e.word, e.start, e.end, e.score.toFixed(3)]) tr.appendChild(el("td", "", String(v)));
        table.appendChild(tr);
      }
      out.appendChild(table);
    }
  } else if (task === "question-answering") {
    const answer = el("div", "");
    answer.appendChild(el("b", "", "Answer: "));
    answer.appendChild(el("span", "answer", result.answer || "(no answer)"));
    answer.appendChild(el("span", "hint", "score " + result.score.toFixed(3) + ", characters " + result.start +
                                         "-" + result.end));
    out.appendChild(answer);
    out.appendChild(highlighted(sent.context, result.answer ? [{start: result.start, end: result.end}] : []));
  } else {
    const v = result.embedding, norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    out.appendChild(el("div", "", v.length + " dimensions, norm " + norm.toFixed(3)));
    out.appendChild(el("code", "", "[" + v.slice(0, 8).map((x) => x.toFixed(4)).join(", ") + ", ...]"));
  }
}

async function run() {
  const task = $("task").value, button = $("run");
  let input;
  if (task === "question-answering") input = {question: $("question").value, context: $("context").value};
  else if (task === "text-classification" && $("pair").value.trim()) input = {text: $("text").value, text_pair: $("pair").value};
  else input = $("text").value;
  button.disabled = true;
  $("output").replaceChildren();
  const t0 = performance.now();
  try {
    const response = await fetch(endpoints[task], {method: "POST", body: JSON.stringify({inputs: input}),
                                                   headers: {"Content-Type": "application/json", ...auth()}});
    if (response.status === 401) askForKey("this server needs an API key: enter it above");
    const ms = performance.now() - t0;
    const body = await response.json().catch(() => ({detail: "the server's reply was not JSON"}));
    if (!response.ok) {
      $("latency").textContent = "HTTP " + response.status + " after " + ms.toFixed(1) + " ms";
      $("output").appendChild(el("div", "error", body.detail || JSON.stringify(body)));
      return;
    }
    $("latency").textContent = "round trip " + ms.toFixed(1) + " ms (server " + body.took_ms.toFixed(1) + " ms)";
    render(task, body.results[0], typeof input === "string" ? {text: input} : input);
  } catch (err) {
    $("latency").textContent = "request failed";
    $("output").appendChild(el("div", "error", String(err)));
  } finally {
    button.disabled = false;
  }
}

async function init() {
  try {
    const response = await fetch("/v1/info", {headers: auth()});
    if (response.status === 401) {
      askForKey(sessionStorage.getItem(KEY_STORE) ? "the API key is not valid: enter it again"
                                                  : "this server needs an API key: enter it above");
      return;
    }
    const info = await response.json();
    $("f-key").classList.add("hidden");
    endpoints = info.endpoints;
    $("task").replaceChildren();
    $("model").textContent = "model " + info.model + " \\u00b7 " + info.task + " \\u00b7 " + info.precision +
      " \\u00b7 max " + info.max_length + " tokens" + (info.labels.length ? " \\u00b7 labels: " + info.labels.join(", ") : "");
    for (const task of Object.keys(endpoints)) {
      const o = el("option", "", NAMES[task] || task);
      o.value = task;
      $("task").appendChild(o);
    }
    if (info.task === "token-classification") $("text").value = "John lives in Paris, the capital of France.";
    showFields();
  } catch (err) {
    $("model").textContent = "cannot reach the server: " + err;
  }
}

$("task").addEventListener("change", showFields);
$("use-key").addEventListener("click", () => { sessionStorage.setItem(KEY_STORE, $("key").value.trim()); init(); });
$("key").addEventListener("keydown", (e) => { if (e.key === "Enter") $("use-key").click(); });
$("run").addEventListener("click", run);
document.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(); });
init();
</script>
</body>
</html>
"""
