// The page's only script: it talks to this service's own API (no CDN, nothing loaded from elsewhere).
"use strict";

const $ = (id) => document.getElementById(id);

let cards = {};  // each offered model's card (GET /models), by name
let picked = "";  // the model the page draws with

function headers(extra) {
  const h = Object.assign({}, extra);
  const token = $("token").value.trim();
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

// The path names the model (POST /models/{name}/sample), so the page sets no multiplexing header.
const of = (name, route) => `/models/${encodeURIComponent(name)}${route}`;

async function call(path, body, accept, contentType) {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: headers({ Accept: accept, "Content-Type": contentType || "application/json" }),
    body: body === undefined ? undefined : body,
  });
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      const detail = (await response.json()).detail;
      message = Array.isArray(detail) ? detail.map((d) => d.msg).join("; ") : String(detail);
    } catch (e) { /* not JSON: keep the status line */ }
    throw new Error(message);
  }
  return response;
}

function say(id, text, isError) {
  $(id).textContent = text;
  $(id).classList.toggle("error", Boolean(isError));
}

async function showImage(target, response) {  // target: an <img> or its id
  const img = typeof target === "string" ? $(target) : target;
  const old = img.src;
  img.src = URL.createObjectURL(await response.blob());
  if (old && old.startsWith("blob:")) URL.revokeObjectURL(old);
}

function sampleBody() {
  return JSON.stringify({ n: Number($("n").value), seed: Number($("seed").value),
                          temperature: Number($("temperature").value) });
}

async function sample() {
  say("sample-status", "drawing…");
  try {
    const response = await call(of(picked, "/sample"), sampleBody(), "image/png");
    await showImage("samples", response);
    say("sample-status", "seed " + response.headers.get("X-Seed"));
  } catch (err) { say("sample-status", err.message, true); }
}

async function animate() {
  say("sample-status", "animating…");
  try {
    await showImage("drawing", await call(of(picked, "/animate"), sampleBody(), "image/gif"));
    say("sample-status", "the canvas at each of the model's steps");
  } catch (err) { say("sample-status", err.message, true); }
}

async function upload() {
  const file = $("file").files[0];
  if (!file) { say("score", "choose a picture first", true); return; }
  const type = file.type === "image/jpeg" ? "image/jpeg" : "image/png";
  say("score", "scoring…");
  try {
    const iw = Number($("iw").value) || 0;
    const scored = await (await call(of(picked, "/score") + "?iw_samples=" + iw, file, "application/json", type)).json();
    const s = scored.scores[0];
    let text = `NLL bound ${s.nll_bound.toFixed(2)} nats (${s.bits_per_dim.toFixed(4)} bits/dim)`;
    if (s.iwae_bound !== null && s.iwae_bound !== undefined) {
      text += `; importance-weighted (k=${scored.iw_samples}) ${s.iwae_bound.toFixed(2)} nats`;
    }
    const resized = scored.resized_from ? `; resized from ${scored.resized_from[1]}×${scored.resized_from[0]}` : "";
    say("score", text + ` — ${scored.likelihood} likelihood${resized}`);
    await showImage("reconstruction", await call(of(picked, "/reconstruct"), file, "image/gif", type));
  } catch (err) { say("score", err.message, true); }
}

function describe(card) {
  const m = card.model;
  const [c, h, w] = card.image_shape;
  // The model's own evaluation (evaluate.json beside it) where it has one, else its last training report.
  const ev = card.evaluation || card.metrics;
  const where = card.evaluation ? ` on the ${ev.split} split` : " on its evaluation split";
  const score = ev.bits_per_dim !== undefined && m.likelihood !== "bernoulli"
    ? `, ${ev.bits_per_dim.toFixed(3)} bits/dim`
    : (ev.nll_bound ? `, ${ev.nll_bound.toFixed(2)} nats` : "");
  return `DRAW, T=${m.T}, ${m.enc_size}/${m.dec_size} LSTMs, z=${m.z_size}, ` +
    (m.attention ? `read ${m.read_n}×${m.read_n}, write ${m.write_n}×${m.write_n}` : "no attention") +
    `, ${c}×${h}×${w} images${card.dataset ? " of " + card.dataset : ""}, ${m.likelihood} likelihood` +
    (score ? score + where : "");
}

// A card's one line: what it was trained on and how well it does.
function facts(card) {
  const ev = card.evaluation || card.metrics;
  const score = card.likelihood !== "bernoulli" && ev.bits_per_dim !== undefined
    ? `${ev.bits_per_dim.toFixed(2)} bits/dim` : (ev.nll_bound ? `${ev.nll_bound.toFixed(1)} nats` : "");
  return [card.dataset || card.image_shape.join("×"), score].filter(Boolean).join(" · ");
}

function addCard(card) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "card";
  button.dataset.model = card.name;
  button.setAttribute("role", "radio");
  const thumb = document.createElement("img");
  thumb.alt = "";
  const text = document.createElement("span");
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = card.name + (card.default ? " (default)" : "");
  const line = document.createElement("span");
  line.className = "facts";
  line.textContent = facts(card);
  text.append(name, line);
  button.append(thumb, text);
  button.addEventListener("click", () => choose(card.name));
  $("models").append(button);
  return thumb;
}

// Four of the model's own images (seed 0), asked for once the picked model has drawn.
async function thumbnail(name, img, n) {
  const body = JSON.stringify({ n: Math.min(4, n), seed: 0 });
  try { await showImage(img, await call(of(name, "/sample"), body, "image/png")); }
  catch (err) { img.title = err.message; }
}

async function choose(name) {
  picked = name;
  for (const b of $("models").children) b.setAttribute("aria-checked", String(b.dataset.model === name));
  const card = cards[name];
  $("model").textContent = describe(card);
  const [c, h, w] = card.image_shape;
  $("file-size").textContent = `a PNG or JPEG of any size (the model sees it at ${w}×${h} pixels` +
    (c === 3 ? ", RGB)" : ", grey)");
  $("reconstruction").removeAttribute("src");
  $("drawing").removeAttribute("src");
  say("score", "");
  await sample();
}

async function start() {
  // A link can carry the token in its fragment (never sent to a server): /#token=...
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) {
    $("token").value = fromLink;
    history.replaceState(null, "", location.pathname);
  }
  try {
    const offered = await (await call("/models", undefined, "application/json")).json();
    const thumbs = {};
    for (const card of offered.models) {
      cards[card.name] = card;
      thumbs[card.name] = addCard(card);
    }
    const info = await (await call(of(offered.default, "/info"), undefined, "application/json")).json();
    $("n").max = info.settings.max_n;
    await choose(offered.default);
    for (const name in thumbs) await thumbnail(name, thumbs[name], info.settings.max_n);
  } catch (err) { say("sample-status", err.message, true); }
}

$("sample-form").addEventListener("submit", (e) => { e.preventDefault(); sample(); });
$("animate").addEventListener("click", animate);
$("upload-form").addEventListener("submit", (e) => { e.preventDefault(); upload(); });
start();
