"use strict";
// rnnlens explore: the front-end. Plain JavaScript and canvases, no libraries, nothing from the internet.
// The text view draws only the lines in view, so the whole test split scrolls at the cost of one screen; each
// strip's colours are one uint8 track of the whole split fetched once (the store's level of every position),
// mapped to colours by the strip's scale (the kind's range, or the unit's own).

const COLS = 100, FONT_PX = 13, ROW_H = 17, STRIP_H = 8, GUTTER = 64, PAGE = 50;
const HOVER = "#e07000", CURSOR = "#000", SELECTION = "#1f5fbf", MATCH = "#f28e00";
// the plot's line colours (Tableau 10): a unit's swatch in the list has its line's colour
const LINES = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const state = {
  info: null, text: null, lineStarts: null, tracks: [], cursor: null, hover: null, selection: null,
  search: null, mask: null, drag: null, charW: 8, renders: 0, lastRenderMs: 0, firstRenderMs: null,
  predictCache: new Map(), pendingFrame: false, predictSeq: 0, unitSeq: 0, searchSeq: 0, unitPage: null,
  plot: null, primaryKey: null, ablation: null, ablationSeq: 0,
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
const num = (v, d = 3) => (v === null || v === undefined ? "–" : v.toFixed(d));
const signed = (v) => (v >= 0 ? "+" : "") + Number(v.toPrecision(3));

function status(message, isError) {
  const el = $("status");
  el.textContent = message;
  el.className = isError ? "err" : "";
}

// 256 colours per palette: diverging blue-white-red (low blue), gates white to green, text features white to purple
function basePalette(kind) {
  const out = [];
  for (let i = 0; i < 256; i++) {
    let r, g, b;
    if (kind === "diverging") {
      const v = i / 127.5 - 1, t = Math.min(1, Math.abs(v)), fade = Math.round(255 * (1 - 0.85 * t));
      [r, g, b] = v >= 0 ? [255, fade, fade] : [fade, fade, 255];
    } else if (kind === "gate") {
      const t = i / 255;
      [r, g, b] = [Math.round(255 * (1 - 0.8 * t)), Math.round(255 * (1 - 0.35 * t)), Math.round(255 * (1 - 0.8 * t))];
    } else {
      const t = i / 255;
      [r, g, b] = [Math.round(255 * (1 - 0.55 * t)), Math.round(255 * (1 - 0.8 * t)), Math.round(255 * (1 - 0.3 * t))];
    }
    out.push(`rgb(${r},${g},${b})`);
  }
  return out;
}
const PALETTES = { diverging: basePalette("diverging"), gate: basePalette("gate"), feature: basePalette("feature") };

// A strip's 256 colours: its levels lo..hi stretched over the whole palette (lo = 0, hi = 255: the palette itself)
function scaledPalette(base, lo, hi) {
  if (lo === 0 && hi === 255) return base;
  return Array.from({ length: 256 }, (_, l) => base[Math.round(255 * Math.min(1, Math.max(0, (l - lo) / (hi - lo))))]);
}

const gradient = (palette) => `linear-gradient(to right, ${[0, 64, 128, 192, 255].map((i) => palette[i]).join(", ")})`;

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
const matched = (p) => state.mask !== null && (state.mask[p >> 3] & (128 >> (p & 7))) !== 0;

function glyph(b) {
  if (b === 10) return "\u21b5";
  if (b === 9) return "\u2192";
  if (b === 32) return "";
  return b > 32 && b < 127 ? String.fromCharCode(b) : "\u00b7";
}

// text for lists: newline and tab visible, other control bytes a dot
const visible = (s) => s.replace(/\n/g, "\u21b5").replace(/\t/g, "\u2192").replace(/[\x00-\x1f\x7f-\xff]/g, "\u00b7");

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
  ctx.textBaseline = "middle";
  const first = Math.floor(top / lh), last = Math.min(state.lineStarts.length - 1, Math.floor((top + H) / lh));
  const [primary, ...strips] = state.tracks;
  for (let L = first; L <= last; L++) {
    const y = L * lh - top, a = state.lineStarts[L], b = lineEnd(L);
    ctx.font = `${FONT_PX}px ui-monospace, monospace`;
    ctx.fillStyle = "#999";
    ctx.textAlign = "right";
    ctx.fillText(String(a), GUTTER - 8, y + ROW_H / 2);
    // each strip is numbered in the gutter, as in the legend above the text
    ctx.font = "7px sans-serif";
    strips.forEach((track, k) => ctx.fillText(String(k + 1), GUTTER - 3, y + ROW_H + 1 + k * STRIP_H + STRIP_H / 2));
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
    ctx.font = `${FONT_PX}px ui-monospace, monospace`;
    for (let p = a; p < b; p++) {
      ctx.fillStyle = text[p] === 10 || text[p] === 9 ? "#888" : "#111";
      ctx.fillText(glyph(text[p]), GUTTER + (p - a) * cw + 0.5, y + ROW_H / 2 + 1);
    }
    if (state.mask) {
      for (let p = a; p < b; p++) {
        if (!matched(p)) continue;
        let e = p;
        while (e + 1 < b && matched(e + 1)) e++;
        mark(ctx, p, e + 1, a, b, y, MATCH, "under");
        p = e;
      }
    }
    if (state.selection) mark(ctx, state.selection[0], state.selection[1], a, b, y, SELECTION, "box");
    if (state.cursor !== null) mark(ctx, state.cursor, state.cursor + 1, a, b, y, CURSOR, "box");
    if (state.hover !== null && state.hover !== state.cursor) mark(ctx, state.hover, state.hover + 1, a, b, y, HOVER, "box");
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
  else { ctx.lineWidth = 2; ctx.strokeRect(x + 1, y + 1, w - 2, ROW_H - 2); }
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

// ------------------------------------------------------------------ strips (the text colour is strip 0)

const shortLabel = (label) => label.split(/,| \(/)[0].trim();  // "z update gate, the paper's (...)": "z update gate"

function trackLabel(t) {
  if (t.type === "lossdiff") return `loss ${t.model} \u2212 ${t.other} (nats)`;
  if (t.type === "feature") return `text feature ${t.name}`;
  if (t.type === "ablation") return `loss ablated \u2212 own: ${t.model} L${t.layer}:${t.unit} ${t.kind} at ${t.mode} (nats)`;
  return `${t.model} L${t.layer}:${t.unit} ${modelInfo(t.model).kind_labels[t.kind]}`;
}

const trackKey = (t) => (t ? JSON.stringify([t.type, t.model, t.kind, t.layer, t.unit, t.mode, t.other, t.name]) : null);

async function loadTrack(spec) {
  const m = modelInfo(spec.model);
  let data, base, palette, legend;
  if (spec.type === "lossdiff") {
    data = await getBytes("/api/lossdiff?" + query({ model: spec.model, other: spec.other }));
    palette = base = PALETTES.diverging;
    legend = { lo: -state.info.loss_range, hi: state.info.loss_range, note: `red: ${spec.model} worse, blue: ${spec.other} worse; clipped at \u00b1${state.info.loss_range} nats` };
  } else if (spec.type === "ablation") {
    const q = query({ model: spec.model, layer: spec.layer, unit: spec.unit, mode: spec.mode });
    const summary = await getJSON("/api/ablation?" + q);
    data = await getBytes("/api/ablation_lossdiff?" + q);
    palette = base = PALETTES.diverging;
    legend = { lo: -summary.scale, hi: summary.scale, summary,
      note: `red: worse with ${spec.kind} L${spec.layer}:${spec.unit} held at ${summary.held.toFixed(3)}, blue: better; ` +
        `clipped at \u00b1${summary.scale} nats; mean ${signed(summary.mean_dloss)} nats/char` };
  } else if (spec.type === "feature") {
    const f = m.text_features.find((x) => x.name === spec.name);
    data = await getBytes("/api/feature?" + query({ model: spec.model, name: spec.name }));
    const hi = f.kind === "binary" ? 1 : Math.max(1, Math.min(255, f.max));
    base = PALETTES.feature;
    palette = scaledPalette(base, 0, hi);
    legend = { lo: 0, hi, note: f.kind === "binary" ? "purple: on" : `count 0 to ${hi}${f.max > 255 ? " (clipped)" : ""}` };
  } else {
    const scale = await getJSON("/api/scale?" + query({ model: spec.model, kind: spec.kind, layer: spec.layer, unit: spec.unit, mode: spec.mode || "auto" }));
    data = await getBytes("/api/track?" + query({ model: spec.model, kind: scale.source, layer: spec.layer, unit: spec.unit }));
    base = ["i", "f", "o", "r", "z"].includes(spec.kind) ? PALETTES.gate : PALETTES.diverging;
    palette = scaledPalette(base, scale.lo_level, scale.hi_level);
    legend = { lo: scale.lo, hi: scale.hi, note: scale.note, own: scale.own, scale };
  }
  return { ...spec, data, base, palette, legend, label: trackLabel(spec) };
}

function anchorPos() {
  return state.lineStarts ? state.lineStarts[Math.floor($("scroller").scrollTop / lineHeight())] : 0;
}

// every change of the strips goes through here, so the header, legend, unit page and predictions follow
function tracksChanged(keep) {
  renderTracks();
  resize(keep ?? anchorPos());
  if (state.ablation && !state.tracks.includes(state.ablation)) {  // its strip was closed: ablation off
    state.ablation = null;
    $("ablate").checked = false;
    $("ablation-note").textContent = "";
  }
  const primary = state.tracks[0], key = trackKey(primary);
  if (key !== state.primaryKey) {
    state.primaryKey = key;
    if (primary && primary.type === "unit") {
      syncControls(primary);
      loadUnitPage(primary);
      ablationControls(primary);
      updateAblation();
    } else {
      clearUnitPage(primary ? `the text is coloured by ${primary.label}, not a unit` : "");
    }
  }
  refreshPrediction();
}

// the unit controls show the unit that colours the text
function syncControls(t) {
  if ($("model").value !== t.model) {
    $("model").value = t.model;
    fillModelControls();
    loadPicker().catch((err) => status(err.message, true));
  }
  $("kind").value = t.kind;
  $("layer").value = t.layer;
  $("unit").value = t.unit;
  $("scale").value = t.mode || "auto";
}

async function setPrimary(spec) {
  try {
    const track = await loadTrack(spec);
    const keep = anchorPos();
    state.tracks[0] = track;
    tracksChanged(keep);
    status("");
  } catch (err) { status(err.message, true); }
}

async function addTrack(spec) {
  if (!state.tracks.length) return setPrimary(spec);
  try {
    const track = await loadTrack(spec);
    const keep = anchorPos();
    state.tracks.push(track);
    tracksChanged(keep);
    status("");
  } catch (err) { status(err.message, true); }
}

function renderTracks() {
  const list = $("tracks"), legend = $("legend");
  list.innerHTML = legend.innerHTML = "";
  state.tracks.forEach((t, i) => {
    // the strip's colours from its low end to its high end: its base palette, whatever its scale
    const colours = gradient(t.base);
    const row = document.createElement("div");
    row.className = "legend-row";
    row.innerHTML = `<span class="num-tag">${i === 0 ? "text" : i}</span><span class="bar" style="background:${colours}"></span>` +
      `<span class="ends">${signed(t.legend.lo)}\u2009\u2026\u2009${signed(t.legend.hi)}</span>`;
    row.append(Object.assign(document.createElement("span"), { className: "legend-label", textContent: `${t.label}: ${t.legend.note}` }));
    legend.append(row);

    const li = document.createElement("li");
    li.innerHTML = `<span class="swatch" style="background:${colours}"></span>${i === 0 ? "<b>text</b>: " : `${i}: `}`;
    li.append(t.label);
    if (t.legend.own) li.append(Object.assign(document.createElement("span"), { className: "own-tag", textContent: " own scale", title: t.legend.note }));
    if (i > 0) li.append(button("\u2191 text", () => { state.tracks.splice(i, 1); state.tracks.unshift(t); tracksChanged(); }));
    if (state.tracks.length > 1) li.append(button("\u00d7", () => { state.tracks.splice(i, 1); tracksChanged(); }));
    list.append(li);
  });
  const primary = state.tracks[0];
  $("colouring").textContent = primary ? `text colour: ${primary.label}${primary.legend.own ? " (own scale)" : ""}` : "";
}

function button(text, onclick) {
  const b = document.createElement("button");
  b.textContent = text;
  b.onclick = onclick;
  return b;
}

// ------------------------------------------------------------------ controls

function option(value, text, title) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  if (title) o.title = title;
  return o;
}

function currentSpec() {
  return { type: "unit", model: $("model").value, kind: $("kind").value, layer: +$("layer").value, unit: +$("unit").value, mode: $("scale").value };
}

function fillModelControls() {
  const m = modelInfo($("model").value);
  for (const id of ["kind", "search-kind"]) {
    $(id).innerHTML = "";
    for (const k of m.kinds) $(id).append(option(k, shortLabel(m.kind_labels[k]), m.kind_labels[k]));
    $(id).value = m.cell_state;
  }
  $("layer").max = m.layers;
  $("unit").max = m.hidden - 1;
  $("feature").innerHTML = "";
  $("feature").append(option("", "each unit's best feature"));
  for (const f of m.features) $("feature").append(option(f, f));
  $("other").innerHTML = "";
  for (const o of state.info.models) if (o.model !== m.model) $("other").append(option(o.model, o.model));
  $("text-feature").innerHTML = "";
  for (const f of m.text_features || []) $("text-feature").append(option(f.name, `${f.name} (${f.kind})`));
  $("scores-of").textContent = m.features.length ? `(scores of ${m.kind_labels[m.cell_state]})` : "(no cell scores)";
}

async function loadPicker() {
  const m = $("model").value;
  const result = await getJSON("/api/units?" + query({ model: m, feature: $("feature").value, limit: 100 }));
  if ($("model").value !== m) return result.units;  // the model changed meanwhile: its own call fills the list
  const list = $("picker");
  list.innerHTML = "";
  result.units.forEach((u, i) => {
    const li = document.createElement("li");
    const measure = u.measure === "auc" ? `AUC ${num(u.value)}` : `Spearman ${num(u.value)}`;
    li.title = `L${u.layer}:${u.unit} ${u.feature}: ${measure}, strength ${num(u.strength)}, partial ${num(u.partial)}, ` +
      `rank #${u.rank} of the units for ${u.feature}; best explained by ${u.explained_by} (strength ${num(u.explained_strength)})`;
    li.innerHTML = `<span class="num">${i + 1}</span><span>L${u.layer}:${u.unit}</span><span class="feat">${u.feature}</span>` +
      `<span class="num strength">${num(u.strength, 2)}</span><span class="num partial">${num(u.partial, 2)}</span>` +
      `<span>${u.sign > 0 ? "\u2191" : "\u2193"}</span><span class="warn">${u.confounded ? `\u26a0\u2009${u.explained_by}` : ""}</span>`;
    Object.assign(li.dataset, { layer: u.layer, unit: u.unit, strength: u.strength, partial: u.partial ?? "", confounded: u.confounded, explainedBy: u.explained_by });
    li.onclick = () => {
      $("kind").value = result.kind;
      $("layer").value = u.layer;
      $("unit").value = u.unit;
      setPrimary(currentSpec());
    };
    list.append(li);
  });
  return result.units;
}

// ------------------------------------------------------------------ ablation (the unit page's toggle)

// The toggle of the unit colouring the text, naming what it holds: always the unit of its layer's cell state (the
// server's kind, the runner's cell kind: LSTM c, GRU and RNN h), whichever kind the page shows. Disabled, saying
// why, where the server cannot ablate its model.
function ablationControls(unit) {
  const model = unit.model, a = modelInfo(model).ablation, box = $("ablate");
  box.disabled = $("ablate-mode").disabled = !a.available;
  $("ablate-label").className = a.available ? "" : "off";
  $("ablate-what").textContent = a.available ? `ablate ${a.kind} unit L${unit.layer}:${unit.unit} (cell state)` : "ablate this unit";
  const shown = unit.kind.replace(/_raw$/, "") === a.kind ? ""
    : ` (the page shows its ${modelInfo(model).kind_labels[unit.kind]}: that is not held, its ${a.kind} is)`;
  $("ablate-label").title = box.title = a.available
    ? `hold unit ${unit.unit} of layer ${unit.layer}'s ${a.kind}${shown} at the chosen value at every step (inside the ` +
      "recurrence), and show the model's predictions with it held beside its own, and the loss difference as a strip"
    : `ablation is not available for ${model}: ${a.reason}`;
  if (!a.available) box.checked = false;
}

// The ablated unit follows the unit that colours the text; its loss-difference strip is replaced when it changes.
async function updateAblation() {
  const primary = state.tracks[0];
  if (primary && primary.type !== "unit") return;  // the text shows a strip, not a unit: nothing to follow
  const a = primary ? modelInfo(primary.model).ablation : null;
  const spec = $("ablate").checked && a && a.available
    ? { type: "ablation", model: primary.model, kind: a.kind, layer: primary.layer, unit: primary.unit, mode: $("ablate-mode").value }
    : null;
  if (trackKey(spec) === trackKey(state.ablation)) return;
  const seq = ++state.ablationSeq;
  if (!spec) {
    const rest = state.tracks.filter((t) => t.type !== "ablation"), keep = anchorPos();
    state.ablation = null;
    $("ablation-note").textContent = "";
    if (rest.length !== state.tracks.length) { state.tracks = rest; tracksChanged(keep); } else refreshPrediction();
    return;
  }
  const what = `${spec.model} L${spec.layer}:${spec.unit} ${spec.kind}`;
  status(`ablating ${what}: predicting the test split again (seconds, once per unit and mode)\u2026`);
  $("ablation-note").textContent = `computing ${what} held at ${spec.mode}\u2026`;
  let track;
  try {
    track = await loadTrack(spec);
  } catch (err) {
    if (seq === state.ablationSeq) { status(err.message, true); $("ablation-note").textContent = err.message; }
    return;
  }
  if (seq !== state.ablationSeq) return;  // the unit or the toggle changed meanwhile
  const keep = anchorPos(), s = track.legend.summary;
  state.tracks = state.tracks.filter((t) => t.type !== "ablation");
  state.tracks.push(track);
  state.ablation = track;
  $("ablation-note").textContent = `${what} held at ${s.held.toFixed(3)} (${spec.mode === "mean" ? "its training mean" : "zero"}) ` +
    `at every step; test loss ${signed(s.mean_dloss)} nats/char (strip ${state.tracks.length - 1}, \u00b1${s.scale} nats); ` +
    `${s.positions.toLocaleString()} positions predicted in ${s.seconds.toFixed(1)} s`;
  status("");
  tracksChanged(keep);
}

// ------------------------------------------------------------------ predictions under the cursor

// the selected model first, then every other model with a strip
function predictionModels() {
  const models = [$("model").value];
  for (const t of state.tracks) for (const m of t.type === "lossdiff" ? [t.model, t.other] : [t.model]) if (!models.includes(m)) models.push(m);
  return models;
}

function refreshPrediction() {
  const pos = state.hover ?? state.cursor;
  if (pos !== null) showPrediction(pos).catch((err) => status(err.message, true));
}

async function showPrediction(pos) {
  if (pos === null || pos === undefined) return;
  const models = predictionModels(), how = pos === state.hover && pos !== state.cursor ? "hovered" : "cursor";
  const seq = ++state.predictSeq;
  const cached = async (key, url) => {
    if (!state.predictCache.has(key)) state.predictCache.set(key, await getJSON(url));
    return state.predictCache.get(key);
  };
  const ab = state.ablation;
  const parts = await Promise.all(models.map(async (m) => [
    await cached(`${m}:${pos}`, "/api/predict?" + query({ model: m, pos })),
    ab && ab.model === m ? await cached(`${trackKey(ab)}:${pos}`, "/api/ablation_predict?" +
      query({ model: m, layer: ab.layer, unit: ab.unit, mode: ab.mode, pos })) : null]));
  if (seq !== state.predictSeq) return;  // a newer position was asked for meanwhile
  $("predict").innerHTML = `<p class="hint">the ${how === "hovered" ? "hovered (orange box)" : "clicked (black box)"} character at ${pos}: ` +
    `what each model predicted for it from the text before it</p>` + parts.map(([r, a]) => predictionHTML(r, a)).join("");
}

function escapeHTML(s) {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
}

// a model's prediction; with `ab` (the ablated unit's at the same position) both top-5 side by side
function predictionHTML(r, ab) {
  const rows = (top, cls) => top.map((t, i) => `<tr class="${cls}${t.byte === r.target ? " ok" : ""}"><td>${i + 1}</td>` +
    `<td class="char">${escapeHTML(t.label)}</td><td class="num" data-p="${t.p}">${t.p.toFixed(4)}</td></tr>`).join("");
  const oracle = r.error ? (r.oracle ? `explained by <b>${escapeHTML(r.oracle)}</b>` : (r.oracles_ran ? "" : "(oracles not run)")) : "";
  const own = `<table><tr><th>#</th><th>${ab ? "own" : "predicted char"}</th><th>p</th></tr>${rows(r.top, "top5")}</table>`;
  const tables = ab ? `<div class="pair">${own}<table class="ablated" title="with L${ab.layer}:${ab.unit} held at ${ab.held.toFixed(3)}">` +
    `<tr><th>#</th><th>ablated</th><th>p</th></tr>${rows(ab.top, "ablated-top5")}</table></div>` : own;
  const ablated = ab ? `ablated p = <span class="p-ablated" data-p="${ab.p}">${fmt(ab.p)}</span>, loss ` +
    `<span class="dloss" data-dloss="${ab.dloss}">${(ab.dloss >= 0 ? "+" : "") + ab.dloss.toFixed(3)}</span> nats<br>` : "";
  return `<div class="prediction" data-model="${r.model}" data-pos="${r.pos}"><h3>${r.model} at ${r.pos}</h3>${tables}` +
    `<p>true char <b>${escapeHTML(r.target_label)}</b>: model p = <span class="p-model">${fmt(r.p)}</span>, ` +
    `${r.ngram ? escapeHTML(r.ngram) : "n-gram"} p = <span class="p-ngram">${fmt(r.p_ngram)}</span><br>${ablated}` +
    `${r.error ? '<span class="err">error</span> ' + oracle : '<span class="ok">not an error</span>'}</p></div>`;
}

// ------------------------------------------------------------------ unit page

function clearUnitPage(message) {
  state.unitSeq++;  // a unit page still loading is not shown
  state.unitPage = null;
  $("unit-page").innerHTML = `<p class="hint">${escapeHTML(message)}</p>`;
  $("unit-contexts").innerHTML = "";
  const c = $("histogram");
  c.getContext("2d").clearRect(0, 0, c.width, c.height);
}

async function loadUnitPage(spec) {
  const seq = ++state.unitSeq;
  try {
    const u = await getJSON("/api/unit?" + query({ model: spec.model, kind: spec.kind, layer: spec.layer, unit: spec.unit, mode: spec.mode || "auto" }));
    if (seq !== state.unitSeq) return;  // another unit was chosen meanwhile
    state.unitPage = u;
    const m = modelInfo(spec.model);
    const sat = Object.entries(u.saturation).map(([g, s]) =>
      `<tr><td>${g}</td><td class="num">${s.left.toFixed(3)}</td><td class="num">${s.right.toFixed(3)}</td></tr>`).join("");
    const feats = u.features.map((f) => `<tr data-feature="${f.feature}" data-strength="${f.strength}" data-partial="${f.partial ?? ""}" data-confounded="${f.confounded}">` +
      `<td>${f.feature}${f.confounded ? ` <b class="warn" title="better explained by ${f.explained_by}">\u26a0</b>` : ""}</td>` +
      `<td class="num">${num(f.strength, 2)}</td><td class="num">${num(f.partial, 2)}</td>` +
      `<td>${f.measure === "auc" ? "AUC" : "\u03c1"}\u2009${num(f.value, 2)}</td><td>${f.sign > 0 ? "\u2191" : "\u2193"}</td><td class="num">#${f.rank}</td></tr>`).join("");
    const e = u.explanation;
    const explained = e ? `<p class="explanation">best explained by <b>${e.feature}</b> (strength ${num(e.strength, 2)}, partial ${num(e.partial, 2)})` +
      (e.runner_up ? `, ${num(e.margin, 2)} ahead of ${e.runner_up}` : "") + "</p>" : "";
    $("unit-page").innerHTML = `<h3>${u.model} layer ${u.layer}, unit ${u.unit}: ${m.kind_labels[u.kind]}</h3>` +
      `<p class="scale-note">colour: ${escapeHTML(u.scale.note)}</p>` +
      `<p>mean ${u.kind_quantity} ${u.mean.toFixed(3)} over the test split</p>` + explained +
      (feats ? `<table class="features"><tr><th>feature</th><th>strength</th><th>partial</th><th>score</th><th></th><th>rank</th></tr>${feats}</table>` +
        `<p class="hint">scores of ${u.scores_of}; strength and partial as in the ranked list; rank: among ${u.model}'s units for ` +
        `that feature; \u2191/\u2193: higher/lower where it is on (or larger); \u26a0: another feature explains the unit better</p>` : "<p>no scores</p>") +
      (sat ? `<table><tr><th>gate</th><th>&lt; 0.1</th><th>&gt; 0.9</th></tr>${sat}</table>` : "") +
      `<h3>Histogram of ${u.quantity} <small>(count, square-root scale)</small></h3>`;
    drawHistogram(u);
    const box = $("unit-contexts");
    box.innerHTML = "";
    for (const side of ["highest", "lowest"]) {
      const part = u[side];
      const h = document.createElement("h3");
      h.textContent = `${side === "highest" ? "Highest" : "Lowest"} ${u.quantity}` + (part.ties > 1 ? ` (${part.ties.toLocaleString()} positions share the ${side === "highest" ? "maximum" : "minimum"}; spread over them)` : "");
      const list = document.createElement("ol");
      list.className = "contexts";
      list.dataset.side = side;
      for (const c of part.contexts) {
        const li = document.createElement("li");
        li.innerHTML = `<span class="val">${c.value.toFixed(2)}${c.raw !== null ? ` (c ${Number(c.raw.toPrecision(3))})` : ""}</span> ` +
          `<span class="ctx">${escapeHTML(visible(c.before))}<mark>${escapeHTML(visible(c.char === " " ? "\u2423" : c.char))}</mark>${escapeHTML(visible(c.after))}</span>`;
        li.title = `position ${c.pos}`;
        li.dataset.pos = c.pos;
        li.onclick = () => jump(c.pos);
        list.append(li);
      }
      box.append(h, list);
    }
  } catch (err) { status(err.message, true); }
}

// the current search threshold in the histogram's values, when the search looks at the same row
function thresholdOn(u) {
  const kind = $("search-kind").value, t = +$("threshold").value;
  if ($("search-scale").value === "kind") return kind === u.scale.source ? t : null;
  const own = u.own_scale;  // the unit's own scale, as the search reads it
  return kind === u.kind && own.source === u.scale.source ? own.lo + t * (own.hi - own.lo) : null;
}

function drawHistogram(u) {
  const c = $("histogram"), ctx = c.getContext("2d"), h = u.histogram, bins = 64, per = 256 / bins;
  const counts = Array.from({ length: bins }, (_, i) => h.counts.slice(i * per, (i + 1) * per).reduce((a, b) => a + b, 0));
  const max = Math.max(1, ...counts), left = 40, bottom = c.height - 26, top = 6, width = c.width - left - 6;
  const x = (v) => left + width * (v - h.lo) / ((h.hi - h.lo) || 1), y = (n) => bottom - (bottom - top) * Math.sqrt(n / max);
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.fillStyle = "#4c72b0";
  counts.forEach((n, i) => { if (n) ctx.fillRect(left + i * width / bins, y(n), Math.max(1, width / bins - 1), bottom - y(n)); });
  ctx.strokeStyle = "#555";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(left - 0.5, top); ctx.lineTo(left - 0.5, bottom + 0.5); ctx.lineTo(left + width, bottom + 0.5);
  ctx.stroke();
  ctx.fillStyle = "#555";
  ctx.font = "10px sans-serif";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const n of [max, Math.round(max / 4), Math.round(max / 16)]) if (n > 0) { ctx.fillText(n.toLocaleString(), left - 4, y(n)); }
  ctx.fillText("0", left - 4, bottom);
  ctx.textBaseline = "top";
  ctx.textAlign = "left";
  ctx.fillText(signed(h.lo), left, bottom + 3);
  ctx.textAlign = "right";
  ctx.fillText(signed(h.hi), left + width, bottom + 3);
  ctx.textAlign = "center";
  const markers = [["mean", h.mean, "#000", []]];
  if (u.scale.own) markers.push(["scale", u.scale.lo, "#999", [2, 2]], ["scale", u.scale.hi, "#999", [2, 2]]);
  const threshold = thresholdOn(u);
  if (threshold !== null && threshold >= h.lo && threshold <= h.hi) markers.push(["threshold", threshold, MATCH, [4, 3]]);
  for (const [name, v, colour, dash] of markers) {
    ctx.strokeStyle = ctx.fillStyle = colour;
    ctx.setLineDash(dash);
    ctx.beginPath();
    ctx.moveTo(x(v), top); ctx.lineTo(x(v), bottom);
    ctx.stroke();
    if (name !== "scale") ctx.fillText(`${name} ${signed(v)}`, Math.min(Math.max(x(v), left + 30), left + width - 30), bottom + 13);
  }
  ctx.setLineDash([]);
  state.histogram = { markers: markers.map(([name, v]) => ({ name, value: v, x: x(v) })), max };
}

// ------------------------------------------------------------------ hypothesis search

function searchParams(offset) {
  return { model: $("model").value, kind: $("search-kind").value, start: $("sel-start").value, end: $("sel-end").value,
    threshold: $("threshold").value, pad: $("pad").value, direction: $("direction").value, scale: $("search-scale").value,
    min_fraction: $("min-fraction").value, max_units: $("max-units").value, offset, limit: PAGE };
}

function clearSearch(message) {
  state.search = state.mask = state.plot = null;
  $("search-units").innerHTML = $("search-matches").innerHTML = $("match-page").textContent = "";
  $("search-summary").textContent = message;
  $("search-summary").className = "err";
  drawPlot();
}

async function runSearch(offset = 0) {
  const start = $("sel-start").value, end = $("sel-end").value;
  if (start === "" || end === "") return clearSearch("select a span first: drag over the text, or type its start and end");
  if (!(+start >= 0 && +start < +end && +end <= state.text.length))
    return clearSearch(`search failed: the span ${start}\u2013${end} is not inside the test split (0\u2013${state.text.length}, start before end)`);
  state.selection = [+start, +end];
  const seq = ++state.searchSeq;
  let r;
  try {
    r = await getJSON("/api/search?" + query(searchParams(offset)));
  } catch (err) {
    if (seq === state.searchSeq) { clearSearch(`search failed: ${err.message}`); status(err.message, true); }
    return;
  }
  if (seq !== state.searchSeq) return;
  status("");
  state.search = r;
  state.mask = Uint8Array.from(atob(r.mask), (ch) => ch.charCodeAt(0));
  const used = r.units.filter((u) => u.used).length;
  $("search-summary").className = "";
  $("search-summary").textContent = `${r.units.length} of ${r.candidates} units (${used} used for matching), ` +
    `${r.total.toLocaleString()} matches (${r.matched_positions.toLocaleString()} positions, all marked in the text) ` +
    `over ${r.positions.toLocaleString()} positions in ${r.ms} ms`;
  const units = $("search-units");
  units.innerHTML = "";
  r.units.forEach((u, i) => {
    const li = document.createElement("li");
    const colour = i < LINES.length ? `<span class="swatch" style="background:${LINES[i]}"></span>` : "";
    li.innerHTML = `${colour}L${u.layer}:${u.unit} ${u.falls ? "\u2193 falls" : "\u2191 rises"}, margin ${u.margin.toFixed(2)}${u.used ? "" : " (not matched)"}`;
    Object.assign(li.dataset, { layer: u.layer, unit: u.unit, falls: u.falls });
    li.onclick = () => addTrack({ type: "unit", model: $("model").value, kind: r.kind, layer: u.layer, unit: u.unit, mode: r.scale === "own" ? "own" : "auto" });
    units.append(li);
  });
  renderMatches(r);
  drawPlot();
  draw();
}

function renderMatches(r) {
  const list = $("search-matches");
  list.innerHTML = "";
  list.start = r.offset + 1;
  const last = r.offset + r.matches.length;
  $("match-page").textContent = r.total ? `${r.offset + 1}\u2013${last} of ${r.total.toLocaleString()}, best first` : "none";
  $("prev-page").disabled = r.offset === 0;
  $("next-page").disabled = last >= r.total;
  const decoder = new TextDecoder("latin1"), text = state.text;
  for (const m of r.matches) {
    const li = document.createElement("li");
    const before = decoder.decode(text.subarray(Math.max(0, m.start - 16), m.start));
    const inner = decoder.decode(text.subarray(m.start, Math.min(m.end, m.start + 40))) + (m.end - m.start > 40 ? "\u2026" : "");
    const after = decoder.decode(text.subarray(m.end, Math.min(text.length, m.end + 16)));
    // a square per unit used: how much of the match it is on (white none, orange all)
    const squares = m.units_on.map((s, j) => `<span class="sq" title="L${r.used[j].layer}:${r.used[j].unit} on over ${Math.round(100 * s)}%" style="background:rgba(242,142,0,${s})"></span>`).join("");
    li.innerHTML = `<span class="ctx">${escapeHTML(visible(before))}<mark>${escapeHTML(visible(inner).replace(/ /g, "\u2423"))}</mark>${escapeHTML(visible(after))}</span>` +
      `<span class="sqs">${squares}</span>`;
    li.title = `positions ${m.start}\u2013${m.end}, score ${m.score.toFixed(2)}, ${Math.round(100 * m.share)}% of the units on`;
    Object.assign(li.dataset, { start: m.start, end: m.end });
    li.onclick = () => jump(m.start);
    list.append(li);
  }
}

// the next (dir 1) or previous (dir -1) matched run from the cursor
function stepMatch(dir) {
  if (!state.mask) return status("no search yet", true);
  const n = state.text.length;
  let p = state.cursor ?? (dir > 0 ? -1 : n);
  while (p >= 0 && p < n && matched(p)) p += dir;  // leave the run the cursor is in
  while (p + dir >= 0 && p + dir < n && !matched(p + dir)) p += dir;
  p += dir;
  if (p < 0 || p >= n || !matched(p)) return status(`no match ${dir > 0 ? "after" : "before"} the cursor`, true);
  while (dir < 0 && p > 0 && matched(p - 1)) p--;  // the start of the run
  jump(p);
}

function drawPlot() {
  const c = $("plot"), ctx = c.getContext("2d"), r = state.search;
  ctx.clearRect(0, 0, c.width, c.height);
  if (!r || !r.plot.series.length) {
    state.plot = null;
    $("plot-note").textContent = "";
    ctx.fillStyle = "#777";
    ctx.font = "12px sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(r ? "the search selected no unit" : "select a span and search: its units are plotted here", c.width / 2, c.height / 2);
    return;
  }
  const p = r.plot, left = 44, right = c.width - 6, top = 8, bottom = c.height - 34;
  const all = p.series.flatMap((s) => s.values).concat([p.threshold]);
  const lo = Math.min(...all), hi = Math.max(...all), span = (hi - lo) || 1;
  const cw = (right - left) / (p.end - p.start);
  const X = (pos) => left + (pos - p.start + 0.5) * cw, Y = (v) => bottom - (bottom - top) * (v - lo) / span;
  ctx.fillStyle = "#e6eefb";
  ctx.fillRect(left + (r.start - p.start) * cw, top, (r.end - r.start) * cw, bottom - top);
  ctx.strokeStyle = "#555";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(left - 0.5, top); ctx.lineTo(left - 0.5, bottom + 0.5); ctx.lineTo(right, bottom + 0.5);
  ctx.stroke();
  ctx.strokeStyle = MATCH;
  ctx.setLineDash([4, 3]);
  ctx.beginPath(); ctx.moveTo(left, Y(p.threshold)); ctx.lineTo(right, Y(p.threshold)); ctx.stroke();
  ctx.setLineDash([]);
  ctx.font = "10px sans-serif";
  ctx.fillStyle = "#555";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const v of [lo, hi, p.threshold]) ctx.fillText(signed(v), left - 4, Y(v));
  p.series.forEach((s, i) => {
    ctx.strokeStyle = LINES[i % LINES.length];
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.values.forEach((v, k) => (k ? ctx.lineTo(X(p.start + k), Y(v)) : ctx.moveTo(X(p.start + k), Y(v))));
    ctx.stroke();
  });
  // the characters under the x axis, the span's in bold
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let pos = p.start; pos < p.end; pos++) {
    ctx.font = `${pos >= r.start && pos < r.end ? "bold " : ""}${Math.min(11, Math.max(7, cw * 1.3))}px ui-monospace, monospace`;
    ctx.fillStyle = pos >= r.start && pos < r.end ? "#1f5fbf" : "#333";
    ctx.fillText(visible(String.fromCharCode(state.text[pos])), X(pos), bottom + 3);
  }
  ctx.font = "10px sans-serif";
  ctx.fillStyle = "#555";
  ctx.textAlign = "left";
  ctx.fillText(`${p.start}`, left, bottom + 19);
  ctx.textAlign = "right";
  ctx.fillText(`${p.end - 1}`, right, bottom + 19);
  state.plot = { X, Y, series: p.series, start: p.start, end: p.end, colours: LINES };
  $("plot-note").textContent = `${r.kind === r.source ? r.kind : `${r.kind} (searched on ${r.source})`}: ` +
    (r.scale === "own" ? "each unit's own scale (0: its 2nd percentile, 1: its 98th)" : "values") +
    `; span shaded, threshold dashed; the top ${p.series.length} of ${r.units.length} units`;
}

// the pixel of series i at a position of the plot (tests read it)
function plotPoint(i, pos) {
  if (!state.plot) return null;
  return { x: state.plot.X(pos), y: state.plot.Y(state.plot.series[i].values[pos - state.plot.start]), colour: LINES[i % LINES.length] };
}

function jump(pos) {
  if (!(Number.isInteger(pos) && pos >= 0 && pos < state.text.length)) return status(`position ${pos} is outside 0..${state.text.length - 1}`, true);
  state.cursor = pos;
  $("jump").value = pos;
  status("");
  scrollToPos(pos);
  showPrediction(pos).catch((err) => status(err.message, true));
}

function goTo() {
  const value = $("jump").value.trim();
  if (value === "") return status(`type a position (0..${state.text.length - 1}) to go to`, true);
  status("");
  jump(Number(value));
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
  $("corpus-info").after(Object.assign(document.createElement("span"), { id: "colouring" }));
  for (const m of state.info.models) $("model").append(option(m.model, `${m.model} (${m.layers}\u00d7${m.hidden} ${m.arch})`));
  fillModelControls();

  $("model").onchange = () => { fillModelControls(); loadPicker().catch((err) => status(err.message, true)); refreshPrediction(); };
  $("feature").onchange = () => loadPicker().catch((err) => status(err.message, true));
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
    addTrack({ type: "unit", model: other, kind: m.cell_state, layer: pick.layer, unit: pick.unit, mode: $("scale").value });
  };
  $("add-lossdiff").onclick = () => {
    const other = $("other").value;
    if (!other) return status("only one model is open: pass two to `rnnlens explore`", true);
    addTrack({ type: "lossdiff", model: $("model").value, other });
  };
  $("add-feature").onclick = () => {
    const name = $("text-feature").value;
    if (!name) return status("this store has no text features: rebuild it", true);
    addTrack({ type: "feature", model: $("model").value, name });
  };
  $("search").onclick = () => runSearch(0);
  $("prev-page").onclick = () => state.search && runSearch(Math.max(0, state.search.offset - PAGE));
  $("next-page").onclick = () => state.search && runSearch(state.search.offset + PAGE);
  $("prev-match").onclick = () => stepMatch(-1);
  $("next-match").onclick = () => stepMatch(1);
  for (const id of ["threshold", "search-kind", "search-scale"]) $(id).addEventListener("change", () => state.unitPage && drawHistogram(state.unitPage));
  for (const [mode, text] of Object.entries(state.info.models[0].ablation.modes)) $("ablate-mode").append(option(mode, `at ${text}`));
  $("ablate").onchange = $("ablate-mode").onchange = () => updateAblation();
  $("go").onclick = goTo;
  $("jump").onkeydown = (e) => { if (e.key === "Enter") goTo(); };
  $("scroller").addEventListener("scroll", scheduleDraw);
  window.addEventListener("resize", () => resize(anchorPos()));
  const canvas = $("text");
  canvas.addEventListener("mousedown", (e) => { state.drag = posAt(e); });
  canvas.addEventListener("mousemove", (e) => {
    const pos = posAt(e);
    if (state.drag !== null && pos !== null && e.buttons & 1) {
      state.selection = [Math.min(state.drag, pos), Math.max(state.drag, pos) + 1];
      scheduleDraw();
    } else if (pos !== state.hover) {
      state.hover = pos;
      scheduleDraw();
      refreshPrediction();
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
  canvas.addEventListener("mouseleave", () => { state.hover = null; scheduleDraw(); refreshPrediction(); });

  const ranked = await loadPicker();
  const m = modelInfo($("model").value);
  const first = ranked.length ? ranked[0] : { layer: 1, unit: 0 };
  $("layer").value = first.layer;
  $("unit").value = first.unit;
  await setPrimary({ type: "unit", model: m.model, kind: m.cell_state, layer: first.layer, unit: first.unit, mode: "auto" });
  drawPlot();
  state.firstRenderMs = performance.now();
  explorer.ready = true;
}

const explorer = { state, ready: false, draw, scrollBench, jump, setPrimary, addTrack, cellBox, anchorPos, plotPoint, runSearch };
window.rnnlensExplorer = explorer;
init().catch((err) => { status(err.message, true); explorer.error = err.message; });
