// SayIt web page: plain JavaScript over the node's HTTP API (same origin only).
"use strict";

const KEY_STORE = "sayit.apiKey";
const EXTENSIONS = { text: "txt", srt: "srt", vtt: "vtt", verbose_json: "json" };
const FORMAT_NAMES = { text: "Text (.txt)", srt: "Subtitles (.srt)", vtt: "WebVTT (.vtt)", verbose_json: "JSON (.json)" };
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const STATUS_WORDS = { queued: "Queued", running: "Transcribing", completed: "Done", failed: "Failed",
                       cancelled: "Cancelled", uploading: "Uploading" };

const $ = (id) => document.getElementById(id);
const jobs = new Map(); // jobId (or a temporary id while uploading) -> job view state
let counter = 0;

// --- talking to the node --------------------------------------------------------------------

function authHeaders() {
  const key = localStorage.getItem(KEY_STORE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

let keyPrompt = null; // one dialog for every request that got 401 at the same time

function askForKey(reason) {
  if (!keyPrompt) {
    keyPrompt = new Promise((resolve, reject) => {
      const dialog = $("key-dialog");
      $("key-reason").textContent = reason;
      $("key-input").value = "";
      dialog.addEventListener("close", function onClose() {
        dialog.removeEventListener("close", onClose);
        keyPrompt = null;
        if (dialog.returnValue === "save" && $("key-input").value.trim()) {
          localStorage.setItem(KEY_STORE, $("key-input").value.trim());
          resolve();
        } else {
          reject(new Error("an API key is needed"));
        }
      });
      dialog.returnValue = "";
      dialog.showModal();
    });
  }
  return keyPrompt;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

// fetch() with the API key; a 401 asks for a key and tries again.
async function api(path, options = {}) {
  for (;;) {
    const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
    if (response.status !== 401) return response;
    const had = localStorage.getItem(KEY_STORE);
    await askForKey(had ? "The saved API key was refused. Enter a valid key." :
      "This node needs an API key. Ask whoever runs it; it is kept in this browser only.");
  }
}

async function apiJson(path, options) {
  const response = await api(path, options);
  if (!response.ok) throw new Error(await errorMessage(response));
  return response.json();
}

// The upload goes through XMLHttpRequest: fetch() cannot report upload progress.
function postForm(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => resolve({ status: xhr.status, text: xhr.responseText });
    xhr.onerror = () => reject(new Error("the node could not be reached"));
    xhr.send(form);
  });
}

// --- formatting ---------------------------------------------------------------------------

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

function duration(seconds) {
  if (seconds == null) return "";
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
  return s ? `${m} min ${s} s` : `${m} min`;
}

function stem(filename) {
  const base = (filename || "transcript").split(/[\\/]/).pop();
  return base.includes(".") ? base.slice(0, base.lastIndexOf(".")) : base;
}

function announce(text) {
  $("announcer").textContent = text;
}

// --- one job card -------------------------------------------------------------------------

function createCard(job) {
  const node = $("job-template").content.firstElementChild.cloneNode(true);
  const n = ++counter;
  job.el = {
    root: node,
    name: node.querySelector(".job-name"),
    badge: node.querySelector(".badge"),
    progress: node.querySelector("progress"),
    status: node.querySelector(".job-status"),
    error: node.querySelector(".job-error"),
    player: node.querySelector(".player"),
    transcript: node.querySelector(".transcript"),
    format: node.querySelector(".job-format"),
    download: node.querySelector(".download"),
    copy: node.querySelector(".copy"),
    cancel: node.querySelector(".cancel"),
  };
  const { el } = job;
  el.name.textContent = job.filename;
  el.name.title = job.filename;
  el.progress.id = `progress-${n}`;
  el.progress.setAttribute("aria-label", `Progress of ${job.filename}`);
  el.transcript.setAttribute("aria-label", `Transcript of ${job.filename}`);
  const formatLabel = node.querySelector(".download-group label");
  el.format.id = `format-${n}`;
  formatLabel.htmlFor = el.format.id;
  formatLabel.textContent = `Download format for ${job.filename}`;
  for (const [value, name] of Object.entries(FORMAT_NAMES)) el.format.add(new Option(name, value));
  el.format.value = $("format").value;
  el.download.setAttribute("aria-label", `Download the transcript of ${job.filename}`);
  el.copy.setAttribute("aria-label", `Copy the transcript of ${job.filename}`);
  if (job.file) {
    job.audioUrl = URL.createObjectURL(job.file);
    el.player.src = job.audioUrl;
    el.player.hidden = false;
    el.player.setAttribute("aria-label", `Audio of ${job.filename}`);
    el.player.addEventListener("timeupdate", () => highlight(job));
  }
  el.download.addEventListener("click", () => download(job));
  el.copy.addEventListener("click", () => copyText(job));
  el.cancel.addEventListener("click", () => cancelOrDelete(job));
  $("job-list").prepend(node);
  $("jobs-empty").hidden = true;
  render(job);
  return job;
}

function render(job) {
  const { el } = job;
  const status = job.status;
  el.root.dataset.status = status;
  el.badge.textContent = STATUS_WORDS[status] || status;
  el.badge.className = `badge ${status}`;
  let progress = job.progress || 0;
  let line = "";
  if (status === "uploading") {
    progress = job.uploaded * 100;
    line = `Uploading… ${Math.round(progress)}%`;
  } else if (status === "queued" || status === "running") {
    const chunks = job.totalChunks ? ` · ${job.completedChunks} of ${job.totalChunks} parts` : "";
    const eta = job.etaSeconds ? ` · about ${duration(job.etaSeconds)} left` : "";
    line = `${STATUS_WORDS[status]} ${Math.round(progress)}%${chunks}${eta}`;
  } else if (status === "completed") {
    line = `Done · ${duration(job.duration)} of audio${job.language ? ` · language ${job.language}` : ""}`;
  } else {
    line = STATUS_WORDS[status] || status;
  }
  el.progress.value = progress;
  el.progress.hidden = TERMINAL.has(status);
  if (el.status.textContent !== line) el.status.textContent = line;
  el.error.hidden = !job.error && !job.warning;
  el.error.textContent = job.error || job.warning || "";
  const done = status === "completed";
  el.download.disabled = !done;
  el.copy.disabled = !(job.text || "").trim();
  el.cancel.textContent = TERMINAL.has(status) ? "Delete" : "Cancel";
  el.cancel.setAttribute("aria-label", `${el.cancel.textContent} ${job.filename}`);
  el.cancel.disabled = status === "uploading";
  renderTranscript(job);
}

function renderTranscript(job) {
  const box = job.el.transcript;
  if (job.segments) {
    if (box.dataset.rendered === "segments") return;
    box.dataset.rendered = "segments";
    box.hidden = false;
    box.replaceChildren();
    let lastSpeaker = null;
    for (const segment of job.segments) {
      const row = document.createElement(job.file ? "button" : "div");
      row.className = "segment";
      if (job.file) {
        row.type = "button";
        row.title = `Play from ${clock(segment.start)}`;
        row.addEventListener("click", () => seek(job, segment.start));
      }
      row.dataset.start = segment.start;
      row.dataset.end = segment.end;
      const time = document.createElement("span");
      time.className = "time";
      time.textContent = clock(segment.start);
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = segment.text.trim();
      if (segment.speaker && segment.speaker !== lastSpeaker) {
        // A diarized job: name the speaker where the voice changes.
        const speaker = document.createElement("strong");
        speaker.className = "speaker";
        speaker.textContent = `${segment.speaker}: `;
        text.prepend(speaker);
      }
      lastSpeaker = segment.speaker || null;
      row.append(time, text);
      box.append(row);
    }
    return;
  }
  const text = (job.text || "").trim();
  box.dataset.rendered = "text";
  if (!text) {
    box.textContent = "";
    box.hidden = true;
    return;
  }
  box.hidden = false;
  if (box.textContent !== text) {
    box.textContent = text;
    box.scrollTop = box.scrollHeight; // follow the text as it grows
  }
}

function seek(job, seconds) {
  const player = job.el.player;
  player.currentTime = seconds;
  player.play().catch(() => { /* autoplay rules: the position is set anyway */ });
}

function highlight(job) {
  const t = job.el.player.currentTime;
  for (const row of job.el.transcript.querySelectorAll(".segment")) {
    row.classList.toggle("playing", t >= Number(row.dataset.start) && t < Number(row.dataset.end));
  }
}

function update(job, view) {
  Object.assign(job, {
    status: view.status, progress: view.progress, completedChunks: view.completedChunks,
    totalChunks: view.totalChunks, etaSeconds: view.etaSeconds, duration: view.duration,
    language: view.language, error: view.error, warning: view.warning,
  });
  if (view.partialText != null && !job.segments) job.text = view.partialText;
  render(job);
}

// --- actions ------------------------------------------------------------------------------

async function submitFile(file) {
  const job = createCard({ key: `upload-${counter + 1}`, filename: file.name, file, status: "uploading", uploaded: 0 });
  jobs.set(job.key, job);
  const form = new FormData();
  form.append("audio", file, file.name);
  form.append("async", "true");
  if ($("language").value) form.append("language", $("language").value);
  if ($("model").value) form.append("model", $("model").value);
  if ($("diarize").checked) form.append("diarize", "true");
  try {
    let result;
    for (;;) {
      result = await postForm("/api/transcribe", form, (fraction) => { job.uploaded = fraction; render(job); });
      if (result.status !== 401) break;
      await askForKey("This node needs an API key. Ask whoever runs it; it is kept in this browser only.");
    }
    let body = null;
    try { body = JSON.parse(result.text); } catch (_) { /* not JSON */ }
    if (result.status !== 202) {
      const message = (body && body.error && body.error.message) || `upload failed (${result.status})`;
      throw new Error(message);
    }
    jobs.delete(job.key);
    job.id = body.jobId;
    job.key = body.jobId;
    jobs.set(job.id, job);
    job.status = body.status;
    job.duration = body.duration;
    job.totalChunks = body.totalChunks;
    job.completedChunks = 0;
    render(job);
    watch(job);
  } catch (err) {
    job.status = "failed";
    job.error = err.message;
    render(job);
    announce(`${file.name}: ${err.message}`);
  }
}

function addFiles(fileList) {
  const files = Array.from(fileList || []);
  if (!files.length) return;
  announce(`${files.length} file${files.length > 1 ? "s" : ""} added`);
  for (const file of files) submitFile(file);
}

// Progress from the job's server-sent events, read with fetch() so the API key can be sent
// (EventSource cannot send headers). If the stream breaks, poll instead. A browser opens at
// most 6 HTTP/1.1 connections to one host, so only a few jobs stream; the others poll.
const MAX_STREAMS = 2;
let openStreams = 0;

async function watch(job) {
  if (openStreams < MAX_STREAMS) {
    openStreams += 1;
    try {
      await streamEvents(job);
    } catch (_) { /* fall through to polling */ } finally {
      openStreams -= 1;
    }
  }
  while (!TERMINAL.has(job.status) && jobs.get(job.id) === job) {
    try {
      update(job, await apiJson(`/api/jobs/${job.id}`));
    } catch (err) {
      job.error = err.message;
      render(job);
    }
    if (!TERMINAL.has(job.status)) await new Promise((r) => setTimeout(r, 1000));
  }
  finished(job);
}

async function streamEvents(job) {
  const response = await api(`/api/jobs/${job.id}/events`, { headers: { Accept: "text/event-stream" } });
  if (!response.ok || !response.body) throw new Error(await errorMessage(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = /^event: ?(.*)$/m.exec(block);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (event && event[1] === "progress" && data) update(job, JSON.parse(data));
    }
  }
}

async function finished(job) {
  if (job.status === "completed") {
    try {
      const result = await apiJson(`/api/jobs/${job.id}/result?format=verbose_json`);
      job.text = result.text;
      job.segments = result.segments;
      job.language = result.language || job.language;
    } catch (err) {
      job.error = `The transcript could not be loaded: ${err.message}`;
    }
    announce(`${job.filename} is transcribed`);
  } else if (job.status === "failed") {
    announce(`${job.filename} failed: ${job.error || "unknown error"}`);
  }
  render(job);
}

async function download(job) {
  const format = job.el.format.value;
  job.el.download.disabled = true;
  try {
    const response = await api(`/api/jobs/${job.id}/result?format=${encodeURIComponent(format)}`);
    if (!response.ok) throw new Error(await errorMessage(response));
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = `${stem(job.filename)}.${EXTENSIONS[format]}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    announce(`Download failed: ${err.message}`);
    job.error = `Download failed: ${err.message}`;
  } finally {
    render(job);
  }
}

async function copyText(job) {
  const text = (job.text || "").trim();
  let ok = false;
  if (navigator.clipboard && window.isSecureContext) {
    try { await navigator.clipboard.writeText(text); ok = true; } catch (_) { /* try the old way */ }
  }
  if (!ok) { // plain http on a LAN address is not a secure context: no Clipboard API there
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.append(area);
    area.select();
    ok = document.execCommand("copy");
    area.remove();
  }
  const button = job.el.copy;
  button.textContent = ok ? "Copied" : "Copy failed";
  announce(ok ? "Transcript copied" : "Copying failed: select the text and copy it");
  setTimeout(() => { button.textContent = "Copy text"; }, 1500);
}

// DELETE cancels a running job, or deletes a finished one; either way its audio and
// transcript are gone from the node at once. The node still lists the job (as cancelled)
// until its retention ends, so the page remembers which ones were deleted here.
const HIDDEN_STORE = "sayit.hiddenJobs";

function hiddenJobs() {
  try { return new Set(JSON.parse(localStorage.getItem(HIDDEN_STORE) || "[]")); } catch (_) { return new Set(); }
}

async function cancelOrDelete(job) {
  const deleting = TERMINAL.has(job.status);
  if (!job.id) { // the upload failed before a job existed
    removeCard(job);
    return;
  }
  try {
    const response = await api(`/api/jobs/${job.id}`, { method: "DELETE" });
    if (!response.ok && response.status !== 404) throw new Error(await errorMessage(response));
    if (deleting) {
      const hidden = hiddenJobs();
      hidden.add(job.id);
      localStorage.setItem(HIDDEN_STORE, JSON.stringify([...hidden].slice(-500)));
      removeCard(job);
      announce(`${job.filename} deleted`);
    } else {
      update(job, await response.json());
      announce(`${job.filename} cancelled`);
    }
  } catch (err) {
    job.error = err.message;
    render(job);
  }
}

function removeCard(job) {
  jobs.delete(job.key || job.id);
  if (job.audioUrl) URL.revokeObjectURL(job.audioUrl);
  job.el.root.remove();
  $("jobs-empty").hidden = $("job-list").children.length > 0;
  $("files").focus();
}

// --- what the node and the cluster look like ----------------------------------------------

async function loadNode() {
  try {
    const health = await apiJson("/api/health");
    $("node-line").textContent = `${health.name} · ${health.model} · ${health.engine}`;
    document.title = `SayIt · ${health.name}`;
    const language = $("language");
    const names = typeof Intl.DisplayNames === "function" ? new Intl.DisplayNames(["en"], { type: "language" }) : null;
    const languages = (health.languages || []).map((code) => [code, names ? names.of(code) : code]);
    languages.sort((a, b) => a[1].localeCompare(b[1]));
    for (const [code, name] of languages) language.add(new Option(name === code ? code : `${name} (${code})`, code));
  } catch (err) {
    $("node-line").textContent = `The node cannot be reached: ${err.message}`;
  }
  try {
    const models = await apiJson("/v1/models");
    const select = $("model");
    for (const entry of models.data.filter((m) => m.id !== "whisper-1")) select.add(new Option(entry.id, entry.id));
    select.disabled = select.options.length < 2;
    const diagnose = await apiJson("/api/diagnose");
    const limits = diagnose.limits || {};
    const size = limits.maxUploadMb >= 1024 ? `${+(limits.maxUploadMb / 1024).toFixed(1)} GB` : `${limits.maxUploadMb} MB`;
    $("limits").textContent = `Up to ${limits.maxDurationMinutes} minutes and ${size} per file. ` +
      "Several files at once are fine; each becomes its own job.";
  } catch (_) { /* the key dialog or the node line already says what is wrong */ }
}

async function loadJobs() {
  let list;
  try {
    list = (await apiJson("/api/jobs?limit=20")).jobs;
  } catch (_) {
    return;
  }
  const hidden = hiddenJobs();
  for (const view of list.reverse()) { // oldest first: createCard prepends
    if (jobs.has(view.jobId) || hidden.has(view.jobId)) continue;
    const job = createCard({ id: view.jobId, key: view.jobId, filename: view.filename || view.jobId, status: view.status });
    jobs.set(job.id, job);
    update(job, view);
    if (TERMINAL.has(view.status)) finished(job);
    else watch(job);
  }
}

function loadText(node) {
  const load = node.load;
  if (!load) return node.state === "up" ? "Load not shared over mDNS" : "";
  const parts = [`${load.activeChunks}/${node.maxConcurrentChunks ?? "?"} parts running`];
  if (load.queuedChunks) parts.push(`${load.queuedChunks} queued`);
  parts.push(`CPU ${Math.round(load.cpu)}%`);
  if (load.speed) parts.push(`${load.speed.toFixed(1)}× real time`);
  return parts.join(" · ");
}

async function loadCluster() {
  let nodes;
  try {
    nodes = (await apiJson("/api/nodes")).nodes;
  } catch (_) {
    return;
  }
  const list = $("node-list");
  list.replaceChildren(...nodes.map((node) => {
    const item = document.createElement("li");
    item.className = `node ${node.state}`;
    const title = document.createElement("p");
    title.className = "node-name";
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.setAttribute("aria-hidden", "true");
    title.append(dot, `${node.name}${node.self ? " (this node)" : ""}`);
    const state = document.createElement("span");
    state.className = "node-state";
    state.textContent = node.state;
    title.append(state);
    const engine = document.createElement("p");
    engine.className = "node-engine";
    engine.textContent = [node.engine, node.model, node.cores ? `${node.cores} cores` : null].filter(Boolean).join(" · ");
    const load = document.createElement("p");
    load.className = "node-load";
    load.textContent = loadText(node);
    const meter = document.createElement("progress");
    meter.max = node.maxConcurrentChunks || 1;
    meter.value = node.load ? node.load.activeChunks : 0;
    meter.setAttribute("aria-label", `${node.name}: parts running`);
    item.append(title, engine, load);
    if (node.load) item.append(meter);
    return item;
  }));
}

// --- wiring -------------------------------------------------------------------------------

function wire() {
  const drop = $("drop");
  $("files").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => { e.preventDefault(); addFiles(e.dataTransfer.files); });
  // A file dropped beside the zone must not navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  // A drop on the zone bubbles up here too: the zone already took its files (defaultPrevented).
  window.addEventListener("drop", (e) => {
    if (e.defaultPrevented) return;
    e.preventDefault();
    if (e.dataTransfer) addFiles(e.dataTransfer.files);
  });
  $("refresh-jobs").addEventListener("click", loadJobs);
  $("key-button").addEventListener("click", () => {
    askForKey(localStorage.getItem(KEY_STORE) ? "A key is saved in this browser. Enter a new one to replace it."
      : "Enter the node's API key, if it needs one. It is kept in this browser only.")
      .then(() => { loadNode(); loadJobs(); loadCluster(); }, () => {});
  });
  $("key-forget").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORE);
    $("key-dialog").close("");
    announce("API key forgotten");
  });
}

wire();
loadNode().then(() => loadJobs());
loadCluster();
// The cluster view refreshes every 5 s, every 2 s while this page has jobs running.
let ticks = 0;
setInterval(() => {
  ticks += 1;
  const busy = [...jobs.values()].some((job) => !TERMINAL.has(job.status));
  if (!document.hidden && (ticks % 5 === 0 || (busy && ticks % 2 === 0))) loadCluster();
}, 1000);
