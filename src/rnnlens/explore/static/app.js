"use strict";
// rnnlens explore: the front-end. Plain JavaScript and one canvas, no libraries, nothing from the internet.
// The text view draws only the lines in view, so the whole test split scrolls at the cost of one screen; each
// unit's colours are one uint8 track of the whole split fetched once (the store's level of every position).

const COLS = 100, FONT_PX = 13, ROW_H = 17, STRIP_H = 5, GUTTER = 64;
const state = {
  info: null, text: null, lineStarts: null, tracks: [], cursor: null, hover: null, selection: null,
  matches: [], drag: null, charW: 8, renders: 0, lastRenderMs: 0, firstRenderMs: null, predictCache: new Map(),
  pendingFrame: false, predictSeq: 0,
};
const $ = (id) => document.getElementById(id);

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

async function getBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error((await response.json()).error || response.statusText);
  return new Uint8Array(await response.arrayBuffer());
}

const query = (params) => new URLSearchParams(params).toString();
const modelInfo = (name) => state.info.models.find((m) => m.model === name);
const fmt = (p) => (p === null || p === undefined ? "–" : p.toFixed(4));

function status(message, isError) {
  const el = $("status");
  el.textContent = message;
  el.className = isError ? "err" : "";
}

// 256 CSS colours per range: [-1, 1] diverging blue-white-red (negative blue), [0, 1] white to green.
function palette(diverging) {
  const out = [];
  for (let i = 0; i < 256; i++) {
    let r, g, b;
    if (diverging) {
      const v = i / 127.5 - 1, t = Math.min(1, Math.abs(v)), fade = Math.round(255 * (1 - 0.85 * t));
      [r, g, b] = v >= 0 ? [255, fade, fade] : [fade, fade, 255];
    } else {
      const t = i / 255;
      [r, g, b] = [Math.round(255 * (1 - 0.8 * t)), Math.round(255 * (1 - 0.35 * t)), Math.round(255 * (1 - 0.8 * t))];
    }
    out.push(`rgb(${r},${g},${b})`);
  }
  return out;
}
const PALETTES = { diverging: palette(true), gate: palette(false) };

// ------------------------------------------------------------------ layout: one byte per cell, COLS per line

function layoutLines(text) {
  const starts = [0];
  let col = 0;
  for (let i = 0; i < text.length; i++) {
    col++;
    if (text[i] === 10 || col === COLS) {
      if (i + 1 < text.length) starts.push(i + 1);
      col = 0;
    }
  }
  return Int32Array.from(starts);
}

function lineOf(pos) {
  const s = state.lineStarts;
  let lo = 0, hi = s.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (s[mid] <= pos) lo = mid; else hi = mid - 1;
  }
  return lo;
}

const lineEnd = (L) => (L + 1 < state.lineStarts.length ? state.lineStarts[L + 1] : state.text.length);
const lineHeight = () => ROW_H + STRIP_H * Math.max(0, state.tracks.length - 1) + 3;

function glyph(b) {
  if (b === 10) return "\u21b5";
  if (b === 9) return "\u2192";
  if (b === 32) return "";
  return b > 32 && b < 127 ? String.fromCharCode(b) : "\u00b7";
}

// ------------------------------------------------------------------ drawing

function resize(keepPos) {
  const scroller = $("scroller"), canvas = $("text"), dpr = window.devicePixelRatio || 1;
  const anchor = keepPos ?? (state.lineStarts ? state.lineStarts[Math.floor(scroller.scrollTop / lineHeight())] : 0);
  canvas.width = scroller.clientWidth * dpr;
  canvas.height = scroller.clientHeight * dpr;
  canvas.style.width = scroller.clientWidth + "px";
  canvas.style.height = scroller.clientHeight + "px";
  if (!state.lineStarts) return;
  const total = state.lineStarts.length * lineHeight();
  $("spacer").style.height = Math.max(0, total - scroller.clientHeight + lineHeight()) + "px";
  scroller.scrollTop = lineOf(anchor || 0) * lineHeight();
  draw();
}

function draw() {
  if (!state.text) return;
  const t0 = performance.now();
  const scroller = $("scroller"), canvas = $("text"), ctx = canvas.getContext("2d");
  const dpr = window.devicePixelRatio || 1, W = scroller.clientWidth, H = scroller.clientHeight;
  const lh = lineHeight(), top = scroller.scrollTop, cw = state.charW, text = state.text;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, W, H);
  ctx.font = `${FONT_PX}px ui-monospace, monospace`;
  ctx.textBaseline = "middle";
  const first = Math.floor(top / lh), last = Math.min(state.lineStarts.length - 1, Math.floor((top + H) / lh));
  const [primary, ...strips] = state.tracks;
  for (let L = first; L <= last; L++) {
    const y = L * lh - top, a = state.lineStarts[L], b = lineEnd(L);
    ctx.fillStyle = "#999";
    ctx.textAlign = "right";
    ctx.fillText(String(a), GUTTER - 8, y + ROW_H / 2);
    ctx.textAlign = "left";
    for (let p = a; p < b; p++) {
      const x = GUTTER + (p - a) * cw;
      if (primary) {
        ctx.fillStyle = primary.palette[primary.data[p]];
        ctx.fillRect(x, y, cw, ROW_H);
      }
      strips.forEach((track, k) => {
        ctx.fillStyle = track.palette[track.data[p]];
        ctx.fillRect(x, y + ROW_H + 1 + k * STRIP_H, cw, STRIP_H - 1);
      });
    }
    for (let p = a; p < b; p++) {
      ctx.fillStyle = text[p] === 10 || text[p] === 9 ? "#888" : "#111";
      ctx.fillText(glyph(text[p]), GUTTER + (p - a) * cw + 0.5, y + ROW_H / 2 + 1);
    }
    for (const m of state.matches) mark(ctx, m.start, m.end, a, b, y, "#f28e00", "under");
    if (state.selection) mark(ctx, state.selection[0], state.selection[1], a, b, y, "#1f5fbf", "box");
    if (state.cursor !== null) mark(ctx, state.cursor, state.cursor + 1, a, b, y, "#000", "box");
  }
  state.renders++;
  state.lastRenderMs = performance.now() - t0;
}

function mark(ctx, start, end, a, b, y, colour, how) {
  const s = Math.max(start, a), e = Math.min(end, b);
  if (s >= e) return;
  const x = GUTTER + (s - a) * state.charW, w = (e - s) * state.charW;
  ctx.strokeStyle = ctx.fillStyle = colour;
  if (how === "under") ctx.fillRect(x, y + ROW_H - 3, w, 3);
  else { ctx.lineWidth = 1.5; ctx.strokeRect(x + 0.5, y + 0.5, w - 1, ROW_H - 1); }
}

function scheduleDraw() {
  if (state.pendingFrame) return;
  state.pendingFrame = true;
  requestAnimationFrame(() => { state.pendingFrame = false; draw(); });
}

function scrollToPos(pos) {
  const scroller = $("scroller");
  scroller.scrollTop = Math.max(0, lineOf(pos) * lineHeight() - scroller.clientHeight / 3);
  draw();
}

function posAt(event) {
  const rect = $("text").getBoundingClientRect(), lh = lineHeight();
  const x = event.clientX - rect.left, y = event.clientY - rect.top + $("scroller").scrollTop;
  const L = Math.floor(y / lh), col = Math.floor((x - GUTTER) / state.charW);
  if (L < 0 || L >= state.lineStarts.length || col < 0 || y - L * lh > ROW_H) return null;
  const pos = state.lineStarts[L] + col;
  return pos < lineEnd(L) ? pos : null;
}

// ------------------------------------------------------------------ tracks

function unitLabel(t) {
  return t.type === "lossdiff" ? `loss ${t.model} \u2212 ${t.other} (nats, \u00b1${state.info.loss_range})`
    : `${t.model} L${t.layer}:${t.unit} ${modelInfo(t.model).kind_labels[t.kind]}`;
}

async function loadTrack(spec) {
  let data, diverging = true;
  if (spec.type === "lossdiff") {
    data = await getBytes("/api/lossdiff?" + query({ model: spec.model, other: spec.other }));
  } else {
    const m = modelInfo(spec.model);
    data = await getBytes("/api/track?" + query({ model: spec.model, kind: spec.kind, layer: spec.layer, unit: spec.unit }));
    diverging = m.ranges[spec.kind][0] < 0;
  }
  return { ...spec, data, palette: diverging ? PALETTES.diverging : PALETTES.gate, label: unitLabel(spec) };
}

function anchorPos() {
  return state.lineStarts ? state.lineStarts[Math.floor($("scroller").scrollTop / lineHeight())] : 0;
}

async function setPrimary(spec) {
  try {
    const track = await loadTrack(spec);
    const keep = anchorPos();
    state.tracks[0] = track;
    renderTracks();
    resize(keep);
    if (spec.type === "unit") loadUnitPage(spec);
    status(`colouring by ${track.label}`);
  } catch (err) { status(err.message, true); }
}

async function addTrack(spec) {
  if (!state.tracks.length) return setPrimary(spec);
  try {
    const track = await loadTrack(spec);
    const keep = anchorPos();
    state.tracks.push(track);
    renderTracks();
    resize(keep);
  } catch (err) { status(err.message, true); }
}

function renderTracks() {
  const list = $("tracks");
  list.innerHTML = "";
  state.tracks.forEach((t, i) => {
    const li = document.createElement("li");
    li.innerHTML = `<span class="swatch" style="background:${t.palette[230]}"></span>${i === 0 ? "<b>text</b>: " : "strip: "}`;
    li.append(t.label);
    if (i > 0) li.append(button("\u2191 text", () => { state.tracks.splice(i, 1); state.tracks.unshift(t); renderTracks(); resize(anchorPos()); if (t.type === "unit") loadUnitPage(t); }));
    if (state.tracks.length > 1) li.append(button("\u00d7", () => { state.tracks.splice(i, 1); renderTracks(); resize(anchorPos()); }));
    list.append(li);
  });
}

function button(text, onclick) {
  const b = document.createElement("button");
  b.textContent = text;
  b.onclick = onclick;
  return b;
}

// ------------------------------------------------------------------ controls

function option(value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  return o;
}

function currentSpec() {
  return { type: "unit", model: $("model").value, kind: $("kind").value, layer: +$("layer").value, unit: +$("unit").value };
}

function fillModelControls() {
  const m = modelInfo($("model").value);
  for (const id of ["kind", "search-kind"]) {
    $(id).innerHTML = "";
    for (const k of m.kinds) $(id).append(option(k, m.kind_labels[k]));
    $(id).value = m.cell_state;
  }
  $("layer").max = m.layers;
  $("unit").max = m.hidden - 1;
  $("feature").innerHTML = "";
  $("feature").append(option("", "each unit's best feature"));
  for (const f of m.features) $("feature").append(option(f, f));
  $("other").innerHTML = "";
  for (const o of state.info.models) if (o.model !== m.model) $("other").append(option(o.model, o.model));
  $("scores-of").textContent = m.features.length ? `(scores of ${m.kind_labels[m.cell_state]})` : "(no cell scores)";
}

async function loadPicker() {
  const m = $("model").value;
  const result = await getJSON("/api/units?" + query({ model: m, feature: $("feature").value, limit: 100 }));
  const list = $("picker");
  list.innerHTML = "";
  for (const u of result.units) {
    const li = document.createElement("li");
    li.textContent = `L${u.layer}:${u.unit}  ${u.feature}  ${u.score.toFixed(3)} ${u.sign > 0 ? "\u2191" : "\u2193"}`;
    li.dataset.layer = u.layer;
    li.dataset.unit = u.unit;
    li.onclick = () => {
      $("kind").value = result.kind;
      $("layer").value = u.layer;
      $("unit").value = u.unit;
      setPrimary(currentSpec());
    };
    list.append(li);
  }
  return result.units;
}

// ------------------------------------------------------------------ predictions under the cursor

async function showPrediction(pos) {
  if (pos === null || pos === undefined) return;
  const models = [...new Set(state.tracks.filter((t) => t.type === "unit").map((t) => t.model)
    .concat(state.tracks.filter((t) => t.type === "lossdiff").flatMap((t) => [t.model, t.other])))];
  if (!models.length) models.push($("model").value);
  const seq = ++state.predictSeq;
  const parts = await Promise.all(models.map(async (m) => {
    const key = `${m}:${pos}`;
    if (!state.predictCache.has(key)) state.predictCache.set(key, await getJSON("/api/predict?" + query({ model: m, pos })));
    return state.predictCache.get(key);
  }));
  if (seq !== state.predictSeq) return;  // a newer position was asked for meanwhile
  $("predict").innerHTML = parts.map(predictionHTML).join("");
}

function escapeHTML(s) {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
}

function predictionHTML(r) {
  const rows = r.top.map((t, i) => `<tr class="top5${t.byte === r.target ? " ok" : ""}"><td>${i + 1}</td>` +
    `<td class="char">${escapeHTML(t.label)}</td><td class="num">${t.p.toFixed(4)}</td></tr>`).join("");
  const oracle = r.error ? (r.oracle ? `explained by <b>${escapeHTML(r.oracle)}</b>` : (r.oracles_ran ? "" : "(oracles not run)")) : "";
  return `<div class="prediction" data-model="${r.model}" data-pos="${r.pos}"><h3>${r.model} at ${r.pos}</h3>` +
    `<table><tr><th>#</th><th>next char</th><th>p</th></tr>${rows}</table>` +
    `<p>true char <b>${escapeHTML(r.target_label)}</b>: model p = <span class="p-model">${fmt(r.p)}</span>, ` +
    `${r.ngram ? escapeHTML(r.ngram) : "n-gram"} p = <span class="p-ngram">${fmt(r.p_ngram)}</span><br>` +
    `${r.error ? '<span class="err">error</span> ' + oracle : '<span class="ok">not an error</span>'}</p></div>`;
}

// ------------------------------------------------------------------ unit page

async function loadUnitPage(spec) {
  try {
    const u = await getJSON("/api/unit?" + query({ model: spec.model, kind: spec.kind, layer: spec.layer, unit: spec.unit }));
    const m = modelInfo(spec.model);
    const sat = Object.entries(u.saturation).map(([g, s]) =>
      `<tr><td>${g}</td><td class="num">${s.left.toFixed(3)}</td><td class="num">${s.right.toFixed(3)}</td></tr>`).join("");
    const feats = u.features.map((f) => `<tr><td>${f.feature}</td><td>${f.measure}</td>` +
      `<td class="num">${f.score.toFixed(3)}</td><td>${f.sign > 0 ? "\u2191" : "\u2193"}</td><td class="num">#${f.rank}</td></tr>`).join("");
    $("unit-page").innerHTML = `<h3>${u.model} layer ${u.layer}, unit ${u.unit}: ${m.kind_labels[u.kind]}</h3>` +
      `<p>mean ${u.mean.toFixed(3)} over the test split</p>` +
      (sat ? `<table><tr><th>gate</th><th>&lt; 0.1</th><th>&gt; 0.9</th></tr>${sat}</table>` : "<p>no gates (vanilla RNN)</p>") +
      `<h3>Best features <small>(scores of ${m.kind_labels[u.scores_of]})</small></h3>` +
      (feats ? `<table><tr><th>feature</th><th></th><th>score</th><th></th><th>rank</th></tr>${feats}</table>` : "<p>no scores</p>") +
      `<h3>Histogram</h3>`;
    drawHistogram(u.histogram);
    const list = $("contexts");
    list.innerHTML = "";
    for (const c of u.contexts) {
      const li = document.createElement("li");
      li.textContent = `${c.value.toFixed(2)} ${c.text.replace(/\n/g, "\u21b5")}`;
      li.title = `position ${c.pos}`;
      li.onclick = () => jump(c.pos);
      list.append(li);
    }
  } catch (err) { status(err.message, true); }
}

function drawHistogram(h) {
  const c = $("histogram"), ctx = c.getContext("2d"), max = Math.max(1, ...h.counts), w = c.width / h.counts.length;
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.fillStyle = "#4c72b0";
  h.counts.forEach((n, i) => {
    const bar = (c.height - 12) * Math.sqrt(n / max);  // square root: the rare bins stay visible
    ctx.fillRect(i * w, c.height - 12 - bar, Math.max(1, w - 1), bar);
  });
  ctx.fillStyle = "#555";
  ctx.font = "10px sans-serif";
  ctx.fillText(String(h.edges[0]), 0, c.height - 1);
  ctx.textAlign = "right";
  ctx.fillText(String(h.edges[h.edges.length - 1]), c.width, c.height - 1);
  ctx.textAlign = "left";
}

// ------------------------------------------------------------------ hypothesis search

async function runSearch() {
  const start = +$("sel-start").value, end = +$("sel-end").value;
  state.selection = [start, end];
  try {
    const r = await getJSON("/api/search?" + query({ model: $("model").value, kind: $("search-kind").value, start, end,
      threshold: $("threshold").value, pad: $("pad").value }));
    state.matches = r.matches;
    $("search-summary").textContent = `${r.units.length} of ${r.candidates} units, ${r.matches.length} matches ` +
      `over ${r.positions.toLocaleString()} positions in ${r.ms} ms`;
    const units = $("search-units"), matches = $("search-matches");
    units.innerHTML = matches.innerHTML = "";
    for (const u of r.units) {
      const li = document.createElement("li");
      li.textContent = `L${u.layer}:${u.unit}  margin ${u.margin.toFixed(2)}${u.used ? "" : " (not matched)"}`;
      li.dataset.layer = u.layer;
      li.dataset.unit = u.unit;
      li.onclick = () => addTrack({ type: "unit", model: $("model").value, kind: r.kind, layer: u.layer, unit: u.unit });
      units.append(li);
    }
    const decoder = new TextDecoder("latin1");
    for (const m of r.matches) {
      const li = document.createElement("li");
      li.textContent = `${m.start}\u2013${m.end}  ${m.score.toFixed(2)}  ${decoder.decode(state.text.subarray(m.start, Math.min(m.end, m.start + 40))).replace(/\n/g, "\u21b5")}`;
      li.dataset.start = m.start;
      li.dataset.end = m.end;
      li.onclick = () => jump(m.start);
      matches.append(li);
    }
    draw();
  } catch (err) { status(err.message, true); }
}

function jump(pos) {
  if (!(pos >= 0 && pos < state.text.length)) return status(`position ${pos} is outside 0..${state.text.length - 1}`, true);
  state.cursor = pos;
  $("jump").value = pos;
  scrollToPos(pos);
  showPrediction(pos);
}

// Where a position's cell is on the canvas (CSS pixels), or null when it is not in view (tests read pixels).
function cellBox(pos) {
  const L = lineOf(pos), y = L * lineHeight() - $("scroller").scrollTop;
  if (y < 0 || y + ROW_H > $("scroller").clientHeight) return null;
  return { x: GUTTER + (pos - state.lineStarts[L]) * state.charW, y, w: state.charW, h: ROW_H };
}

// ------------------------------------------------------------------ benchmarks (bench/bench_explore.py)

// Scroll `chars` characters a third of a screen per frame, drawing each frame; -> {ms, frames, max_frame_ms}.
function scrollBench(chars) {
  const scroller = $("scroller"), start = anchorPos();
  let frames = 0, total = 0, worst = 0;
  while (anchorPos() - start < chars && scroller.scrollTop + scroller.clientHeight < scroller.scrollHeight) {
    scroller.scrollTop += Math.max(1, Math.floor(scroller.clientHeight / 3));
    draw();
    frames++;
    total += state.lastRenderMs;
    worst = Math.max(worst, state.lastRenderMs);
  }
  return { ms: total, frames, max_frame_ms: worst, chars: anchorPos() - start };
}

// ------------------------------------------------------------------ start

async function init() {
  state.info = await getJSON("/api/info");
  state.text = await getBytes("/api/text");
  state.lineStarts = layoutLines(state.text);
  const ctx = $("text").getContext("2d");
  ctx.font = `${FONT_PX}px ui-monospace, monospace`;
  state.charW = Math.ceil(ctx.measureText("M").width);
  const sizes = state.info.models.map((m) => `${m.model} ${(m.total_bytes / 2 ** 20).toFixed(1)} MiB`).join(", ");
  $("corpus-info").textContent = `${state.info.corpus}: ${state.info.positions.toLocaleString()} test characters; stores ${sizes}`;
  for (const m of state.info.models) $("model").append(option(m.model, `${m.model} (${m.layers}\u00d7${m.hidden} ${m.arch})`));
  fillModelControls();

  $("model").onchange = () => { fillModelControls(); loadPicker(); };
  $("feature").onchange = loadPicker;
  $("show").onclick = () => setPrimary(currentSpec());
  $("add-track").onclick = () => addTrack(currentSpec());
  // the other model's best unit for the chosen feature (its best quote cell beside this one's), else the same index
  $("add-other").onclick = async () => {
    const other = $("other").value;
    if (!other) return status("only one model is open: pass two to `rnnlens explore`", true);
    const m = modelInfo(other), feature = $("feature").value;
    let pick = { layer: Math.min(+$("layer").value, m.layers), unit: Math.min(+$("unit").value, m.hidden - 1) };
    if (feature && m.features.includes(feature)) {
      const best = await getJSON("/api/units?" + query({ model: other, feature, limit: 1 }));
      if (best.units.length) pick = best.units[0];
    }
    addTrack({ type: "unit", model: other, kind: m.cell_state, layer: pick.layer, unit: pick.unit });
  };
  $("add-lossdiff").onclick = () => {
    const other = $("other").value;
    if (!other) return status("only one model is open: pass two to `rnnlens explore`", true);
    addTrack({ type: "lossdiff", model: $("model").value, other });
  };
  $("search").onclick = runSearch;
  $("go").onclick = () => jump(+$("jump").value);
  $("jump").onkeydown = (e) => { if (e.key === "Enter") jump(+$("jump").value); };
  $("scroller").addEventListener("scroll", scheduleDraw);
  window.addEventListener("resize", () => resize(anchorPos()));
  const canvas = $("text");
  canvas.addEventListener("mousedown", (e) => { state.drag = posAt(e); });
  canvas.addEventListener("mousemove", (e) => {
    const pos = posAt(e);
    if (state.drag !== null && pos !== null && e.buttons & 1) {
      state.selection = [Math.min(state.drag, pos), Math.max(state.drag, pos) + 1];
      scheduleDraw();
    } else if (pos !== null && pos !== state.hover) {
      state.hover = pos;
      showPrediction(pos).catch((err) => status(err.message, true));
    }
  });
  canvas.addEventListener("mouseup", (e) => {
    const pos = posAt(e);
    if (state.drag !== null && pos !== null && pos !== state.drag) {
      state.selection = [Math.min(state.drag, pos), Math.max(state.drag, pos) + 1];
      [$("sel-start").value, $("sel-end").value] = state.selection;
    } else if (pos !== null) {
      jump(pos);
    }
    state.drag = null;
  });
  canvas.addEventListener("mouseleave", () => { state.hover = null; });

  const ranked = await loadPicker();
  const m = modelInfo($("model").value);
  const first = ranked.length ? ranked[0] : { layer: 1, unit: 0 };
  $("layer").value = first.layer;
  $("unit").value = first.unit;
  await setPrimary({ type: "unit", model: m.model, kind: m.cell_state, layer: first.layer, unit: first.unit });
  state.firstRenderMs = performance.now();
  explorer.ready = true;
}

const explorer = { state, ready: false, draw, scrollBench, jump, setPrimary, addTrack, cellBox, anchorPos };
window.rnnlensExplorer = explorer;
init().catch((err) => { status(err.message, true); explorer.error = err.message; });
