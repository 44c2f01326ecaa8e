// The idme page: microphone -> AudioWorklet -> WebSocket /v1/listen (f32le at the context's rate; the server
// resamples once to 16 kHz), events -> transcript and timeline. Protocol: docs/protocol.md.
"use strict";

const $ = (id) => document.getElementById(id);
const hash = new URLSearchParams(location.hash.slice(1));
if (hash.get("token")) {
  // The token arrives in the fragment (never sent to a server); keep it for this tab only and drop it from
  // the address bar so it is not bookmarked or shared.
  sessionStorage.setItem("idme-token", hash.get("token"));
  history.replaceState(null, "", location.pathname + location.search);
}
const query = new URLSearchParams(location.search);
const ENROL_S = Number(query.get("enrol_s") || 8);
const SEND_EVERY_S = 0.1;  // one binary message per 100 ms of audio
const NO_RETRY = new Set([1008, 1009, 1011]);  // refused start, too big, not ready: reconnecting will not help
let token = sessionStorage.getItem("idme-token");

function say(text, error = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", error);
}

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...(opts.headers || {}), Authorization: `Bearer ${token}` } });
  if (r.status === 401) {
    $("token-box").hidden = false;
    throw new Error("the token was refused: paste the one `idme serve` printed");
  }
  return r;
}

async function problem(r) {
  try { return (await r.json()).detail || r.statusText; } catch (e) { return r.statusText; }
}

// -- microphone ------------------------------------------------------------------------------------
let mic = null;

async function openMic() {
  if (mic) return mic;
  if (!window.isSecureContext) {
    throw new Error("this page is not a secure context, so the browser will not open the microphone: " +
      "open it as http://127.0.0.1:PORT/ on this machine, or serve https (--certfile/--keyfile)");
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw new Error("this browser cannot record audio");
  let stream;
  try {
    // Echo cancellation, noise suppression and gain control reshape the voice, and so the voiceprint.
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 } });
  } catch (e) {
    throw new Error(e.name === "NotAllowedError"
      ? "the microphone was refused: allow it in the site settings and reload"
      : `no microphone (${e.name}: ${e.message})`);
  }
  const ctx = new AudioContext();
  await ctx.audioWorklet.addModule("/static/worklet.js");
  const node = new AudioWorkletNode(ctx, "pcm-capture");
  const listeners = new Set();
  node.port.onmessage = (e) => { for (const f of listeners) f(e.data); };
  ctx.createMediaStreamSource(stream).connect(node);
  const mute = ctx.createGain();  // a silent path to the output keeps the worklet pulled in every browser
  mute.gain.value = 0;
  node.connect(mute).connect(ctx.destination);
  await ctx.resume();
  mic = { ctx, stream, listeners, rate: ctx.sampleRate };
  return mic;
}

function record(seconds) {
  return new Promise((resolve) => {
    const parts = [];
    let n = 0;
    const need = seconds * mic.rate;
    const take = (block) => {
      parts.push(block);
      n += block.length;
      if (n >= need) { mic.listeners.delete(take); resolve(parts); }
    };
    mic.listeners.add(take);
  });
}

function wav(parts, rate) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const buf = new ArrayBuffer(44 + 2 * n);
  const v = new DataView(buf);
  const text = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  text(0, "RIFF"); v.setUint32(4, 36 + 2 * n, true); text(8, "WAVE"); text(12, "fmt ");
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, rate, true);
  v.setUint32(28, 2 * rate, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  text(36, "data"); v.setUint32(40, 2 * n, true);
  let o = 44;
  for (const p of parts) for (const x of p) { v.setInt16(o, Math.max(-1, Math.min(1, x)) * 32767, true); o += 2; }
  return buf;
}

async function enrolMe() {
  const out = $("enrol-result");
  try {
    await openMic();
    say(`Enrolling: speak for ${ENROL_S} s…`);
    const form = new FormData();
    form.append("files", new Blob([wav(await record(ENROL_S), mic.rate)], { type: "audio/wav" }), "browser-take.wav");
    say("checking the recording…");
    const r = await api("/v1/profiles/me/enroll", { method: "POST", body: form });
    if (!r.ok) throw new Error(await problem(r));
    const j = await r.json();
    out.dataset.status = j.status;
    out.textContent = j.status === "enrolled"
      ? `✓ enrolled (${j.takes.map((t) => t.speech_s + " s of speech").join(", ")})` : `✗ ${j.reason}`;
    say(j.status === "enrolled" ? "enrolled: start listening" : "enrolment rejected: try again", j.status !== "enrolled");
  } catch (e) {
    out.dataset.status = "error";
    say(e.message, true);
  }
}

// -- streaming -------------------------------------------------------------------------------------
let ws = null, started = false, stopping = false, retry = 0, pending = [], pendingN = 0, sessionId = null;
const segments = new Map();  // id -> latest event
const colours = new Map();
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#ff7f0e"];

function colourOf(label, kind) {
  if (kind === "me") return "#111";
  if (!colours.has(label)) colours.set(label, PALETTE[colours.size % PALETTE.length]);
  return colours.get(label);
}

function clock(s) {
  const m = Math.floor(s / 60);
  return `${String(m).padStart(2, "0")}:${(s - 60 * m).toFixed(1).padStart(4, "0")}`;
}

function render() {
  const list = $("transcript"), line = $("timeline");
  const evs = [...segments.values()].sort((a, b) => a.start - b.start);
  const total = Math.max(1, ...evs.map((e) => e.end));
  list.replaceChildren(...evs.map((e) => {
    const li = document.createElement("li");
    li.className = e.final ? "final" : "interim";
    li.dataset.speaker = e.speaker; li.dataset.kind = e.kind; li.dataset.final = String(e.final);
    const when = document.createElement("span"); when.className = "when"; when.textContent = clock(e.start);
    const who = document.createElement("span"); who.className = "who"; who.textContent = e.speaker;
    who.style.color = colourOf(e.speaker, e.kind);
    const what = document.createElement("span"); what.className = "text"; what.textContent = e.text || "";
    li.append(when, who, what);
    return li;
  }));
  line.replaceChildren(...evs.filter((e) => e.final).map((e) => {
    const b = document.createElement("div");
    b.className = "block"; b.title = `${e.speaker} ${clock(e.start)}–${clock(e.end)}`;
    b.style.left = `${(100 * e.start) / total}%`; b.style.width = `${(100 * (e.end - e.start)) / total}%`;
    b.style.background = colourOf(e.speaker, e.kind);
    return b;
  }));
}

function sendAudio(block) {
  if (!ws || ws.readyState !== WebSocket.OPEN || !started || stopping) return;
  pending.push(block);
  pendingN += block.length;
  if (pendingN >= mic.rate * SEND_EVERY_S) flush();
}

function flush() {
  if (!pendingN) return;
  const buf = new Float32Array(pendingN);  // Float32Array is little-endian on every platform browsers run on
  let o = 0;
  for (const p of pending) { buf.set(p, o); o += p.length; }
  ws.send(buf.buffer);
  pending = []; pendingN = 0;
}

function onEvent(ev) {
  switch (ev.type) {
    case "started":
      started = true; retry = 0; sessionId = ev.session_id;
      say(`listening (session ${ev.session_id}, ${ev.sample_rate} Hz)`);
      break;
    case "segment": case "relabel": case "text":
      segments.set(ev.id, ev); render();
      break;
    case "lag":
      say(`the server is ${ev.queued_s} s behind`);
      break;
    case "end":
      say(`saved session ${ev.session_id}: ${ev.n_segments} segments, ${ev.audio_s} s`);
      showSession(ev.session_id);
      break;
    case "error": case "overload":
      say(`${ev.code}: ${ev.detail}`, ev.code !== "bad_message");
      break;
  }
}

async function start() {
  try {
    await openMic();
    const t = await api("/v1/tickets", { method: "POST" });
    if (!t.ok) throw new Error(await problem(t));
    const { ticket } = await t.json();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${scheme}//${location.host}/v1/listen?ticket=${encodeURIComponent(ticket)}`);
    started = false; stopping = false;
    ws.onopen = () => ws.send(JSON.stringify({ type: "start", encoding: "f32le", sample_rate: mic.rate, channels: 1 }));
    ws.onmessage = (e) => onEvent(JSON.parse(e.data));
    ws.onclose = onClose;
    mic.listeners.add(sendAudio);
    $("start").disabled = true; $("stop").disabled = false; $("after").hidden = true;
  } catch (e) {
    say(e.message, true);
  }
}

function onClose(e) {
  mic.listeners.delete(sendAudio);
  $("start").disabled = false; $("stop").disabled = true;
  if (stopping) return;
  if (NO_RETRY.has(e.code)) { say(`stopped: ${e.reason || e.code}`, true); return; }
  const wait = Math.min(30, 2 ** retry++);  // reconnect with backoff: 1, 2, 4 … 30 s
  say(`connection lost; reconnecting in ${wait} s`, true);
  setTimeout(start, wait * 1000);
}

function stop() {
  if (!ws) return;
  flush();
  stopping = true;
  ws.send(JSON.stringify({ type: "stop" }));
  $("stop").disabled = true;
  say("finishing: labelling what was heard…");
}

// -- after a session: export, name a speaker --------------------------------------------------------
async function showSession(id) {
  const r = await api(`/v1/sessions/${encodeURIComponent(id)}`);
  if (!r.ok) { say(await problem(r), true); return; }
  const s = await r.json();
  segments.clear();
  for (const g of s.segments) segments.set(g.seg_id, { ...g, id: g.seg_id });
  render();
  $("session-id").textContent = s.id;
  // Most speech first: naming needs segments of 1 s or more, which a speaker heard only briefly may lack.
  const unknown = s.speakers.filter((p) => p.kind === "unknown").sort((a, b) => b.speech_s - a.speech_s);
  $("speaker").replaceChildren(...unknown.map((p) => {
    const o = document.createElement("option");
    o.value = p.label; o.textContent = `${p.label} (${p.speech_s.toFixed(1)} s)`;
    return o;
  }));
  $("after").hidden = false;
}

async function exportAs(fmt) {
  const id = $("session-id").textContent;
  const r = await api(`/v1/sessions/${encodeURIComponent(id)}/export/${fmt}`);
  if (!r.ok) { say(await problem(r), true); return; }
  const a = document.createElement("a");
  a.href = URL.createObjectURL(await r.blob());
  a.download = `${id}.${fmt}`;
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

async function nameSpeaker() {
  const id = $("session-id").textContent, speaker = $("speaker").value, person = $("person").value.trim();
  if (!speaker || !person) { $("name-result").textContent = "pick a speaker and type a name"; return; }
  const r = await api(`/v1/sessions/${encodeURIComponent(id)}/name`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ speaker, person }) });
  $("name-result").textContent = r.ok ? `✓ ${speaker} is now ${person} (${(await r.json()).relabelled} segments)`
    : `✗ ${await problem(r)}`;
  if (r.ok) showSession(id);
}

// -- wiring ----------------------------------------------------------------------------------------
async function ready() {
  if (!window.isSecureContext) say("not a secure context: the microphone will not open (use 127.0.0.1 or https)", true);
  if (!token) { $("token-box").hidden = false; say("paste the API token to begin"); return; }
  try {
    const r = await api("/v1/profiles");
    const names = (await r.json()).map((p) => p.name);
    say(names.includes("me") ? "ready: start listening" : "enrol yourself first (Enrol me), then start listening");
  } catch (e) {
    say(e.message, true);
  }
}

$("save-token").onclick = () => {
  token = $("token").value.trim();
  sessionStorage.setItem("idme-token", token);
  $("token-box").hidden = true;
  ready();
};
$("enrol").onclick = enrolMe;
$("start").onclick = start;
$("stop").onclick = stop;
$("name").onclick = nameSpeaker;
for (const b of document.querySelectorAll("[data-fmt]")) b.onclick = () => exportAs(b.dataset.fmt);
ready();
