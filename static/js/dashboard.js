// The live dashboard: keep server-rendered panels true while the GPU works.
//
// Panels are fragments the server renders (data-live-panel, data-src). This module decides
// when to fetch them again (after a live event, debounced, or all of them after a resync),
// patches step progress and VRAM numbers in place from the events' absolute values, and
// ticks elapsed times and estimates every second from ISO timestamps. The server stays the
// only author of words and state: a missed event costs a repaint, never a wrong screen.

const DEBOUNCE_MS = 100;
// Which events make which panel fetch itself again.
const REPAINT = {
  queue: ["job.status", "job.other"],
  history: ["job.status"],
  "gpu-queue": ["job.status", "job.other"],
  gpu: ["runtime.state", "job.status", "job.other"],
  images: ["image.created", "review.created", "decision.recorded"],
};
const STATUS_WORDS = {
  connecting: "Connecting to live updates…",
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Offline: showing the last state received",
  unavailable: "Live updates unavailable: reload to retry",
  "signed-out": "Signed out: sign in again for live updates",
  refused: "No access any more: reload the page",
};
const STATUS_RANK = [
  "live",
  "connecting",
  "reconnecting",
  "offline",
  "unavailable",
  "refused",
  "signed-out",
];
const PHASE_WORDS = {
  waiting_for_gpu: "waiting for the GPU",
  releasing: "releasing VRAM",
  verifying_vram: "verifying VRAM",
  starting: "starting a runtime",
  loading: "loading weights",
  warming: "warming up",
  generating: "generating",
  uploading: "uploading",
  reviewing: "reviewing",
  recording: "recording",
};

const root = document.querySelector("[data-dashboard]");
let clockOffset = 0; // the server's clock minus the browser's, in ms
const timers = new Map();
const generations = new Map();
const statuses = new Map();
const lastProgress = new Map(); // job → its latest job.progress event, re-applied after a repaint

// -- words, as the server writes them (artcritic.live.selectors / artcritic.jobs.eta) --------

export function clockWords(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  if (total < 60) return `${total} s`;
  let minutes = Math.floor(total / 60);
  const rest = total % 60;
  if (minutes < 60) return rest ? `${minutes} m ${rest} s` : `${minutes} m`;
  const hours = Math.floor(minutes / 60);
  minutes %= 60;
  return minutes ? `${hours} h ${minutes} m` : `${hours} h`;
}

export function durationWords(seconds) {
  if (seconds < 45) return "under a minute";
  const minutes = Math.max(1, Math.round(seconds / 60));
  if (minutes < 60) return `about ${minutes} min`;
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest ? `about ${hours} h ${rest} min` : `about ${hours} h`;
}

function energyWords(joules) {
  if (joules === null || joules === undefined) return "not reported";
  return joules < 1e6 ? `${(joules / 1000).toFixed(1)} kJ` : `${(joules / 3.6e6).toFixed(2)} kWh`;
}

// Django's "c" format may carry microseconds; Date.parse wants at most milliseconds.
function parseTime(iso) {
  return iso ? Date.parse(iso.replace(/(\.\d{3})\d+/, "$1")) : NaN;
}

function calibrate(element) {
  const serverTime = parseTime(element?.dataset?.now);
  if (!Number.isNaN(serverTime)) clockOffset = serverTime - Date.now();
}

// -- timers ------------------------------------------------------------------------------

function tick() {
  const now = Date.now() + clockOffset;
  for (const element of document.querySelectorAll("[data-since]")) {
    const since = parseTime(element.dataset.since);
    if (Number.isNaN(since)) continue;
    const seconds = (now - since) / 1000;
    element.textContent = clockWords(seconds);
    const staleAfter = Number(element.dataset.staleAfter);
    const reading = staleAfter ? element.closest("[data-reading]") : null;
    if (reading) {
      reading.classList.toggle("is-stale", seconds > staleAfter);
      const note = reading.querySelector("[data-stale-note]");
      if (note) note.hidden = seconds <= staleAfter;
    }
  }
  for (const element of document.querySelectorAll("[data-until]")) {
    const until = parseTime(element.dataset.until);
    if (Number.isNaN(until)) continue;
    const seconds = (until - now) / 1000;
    element.textContent = seconds > 0 ? durationWords(seconds) : "a moment (later than estimated)";
  }
}

// -- panels ------------------------------------------------------------------------------

function schedule(panel) {
  const id = panel.id;
  if (!id || !panel.dataset.src) return;
  clearTimeout(timers.get(id));
  timers.set(
    id,
    setTimeout(() => {
      timers.delete(id);
      repaint(id);
    }, DEBOUNCE_MS),
  );
}

// After a hello: every panel at once, and a promise, so live.js holds later events until
// the fresh HTML is in (then applies them on top, in order).
function repaintAll() {
  const ids = [...document.querySelectorAll("[data-live-panel]")].map((panel) => panel.id);
  for (const id of ids) {
    clearTimeout(timers.get(id));
    timers.delete(id);
  }
  return Promise.all(ids.filter(Boolean).map((id) => repaint(id)));
}

function repaintFor(type, event) {
  for (const panel of document.querySelectorAll("[data-live-panel]")) {
    if (!(REPAINT[panel.dataset.livePanel] || []).includes(type)) continue;
    if (panel.dataset.gpu && event.gpu && panel.dataset.gpu !== event.gpu) continue;
    schedule(panel);
  }
}

async function repaint(id) {
  const panel = document.getElementById(id);
  if (!panel) return;
  const mine = (generations.get(id) || 0) + 1;
  generations.set(id, mine);
  let response;
  try {
    response = await fetch(panel.dataset.src, {
      credentials: "same-origin",
      headers: { "X-Fragment": panel.dataset.livePanel },
    });
  } catch {
    panel.classList.add("is-stale");
    return;
  }
  if (generations.get(id) !== mine) return; // a newer repaint of this panel is under way
  if (response.redirected && new URL(response.url).pathname.startsWith("/login")) {
    setStatus("page", "signed-out");
    return;
  }
  if (!response.ok) {
    panel.classList.add("is-stale");
    return;
  }
  const html = await response.text();
  const current = document.getElementById(id);
  if (generations.get(id) === mine && current) swap(current, html);
}

function swap(panel, html) {
  const template = document.createElement("template");
  template.innerHTML = html.trim();
  const fresh =
    template.content.querySelector(`#${CSS.escape(panel.id)}`) || template.content.firstElementChild;
  if (!fresh) return;
  const focused = document.activeElement;
  const key = panel.contains(focused) ? focused.dataset?.focusKey || "" : null;
  panel.replaceWith(fresh);
  calibrate(fresh);
  // Progress that arrived while the fragment was on its way is newer than the fragment.
  const paintedAt = parseTime(fresh.dataset.now);
  for (const event of lastProgress.values()) {
    if (parseTime(event.at) > paintedAt) patchProgress(event, fresh);
  }
  tick();
  if (key !== null) {
    const again = key && fresh.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (again) {
      again.focus();
    } else {
      // What had focus is gone (a cancelled job's button): keep the reader in the panel.
      fresh.setAttribute("tabindex", "-1");
      fresh.focus();
    }
  }
}

// -- patches from absolute values --------------------------------------------------------

function patchProgress(event, within = document) {
  const { current = 0, total = 0 } = event.progress || {};
  let patched = false;
  for (const row of within.querySelectorAll(`[data-job="${CSS.escape(String(event.job))}"]`)) {
    const bar = row.querySelector("[data-progress]");
    if (!bar || !total) continue;
    bar.setAttribute("aria-valuemax", String(total));
    bar.setAttribute("aria-valuenow", String(current));
    const fill = bar.querySelector(".progress__bar");
    if (fill) fill.style.width = `${Math.max(0, Math.min(100, Math.round((100 * current) / total)))}%`;
    const label = row.querySelector("[data-progress-label]");
    if (label) label.textContent = event.detail?.text || `generating ${current}/${total}`;
    patched = true;
  }
  return patched;
}

function patchReading(event) {
  const detail = event.detail || {};
  const selector = `[data-live-panel="gpu"][data-gpu="${CSS.escape(event.gpu || "")}"]`;
  for (const panel of document.querySelectorAll(selector)) {
    const reading = panel.querySelector("[data-reading]");
    const pids = (detail.processes || []).map((process) => String(process.pid)).sort().join(",");
    if (!reading || !detail.ok || reading.dataset.ok !== "1" || reading.dataset.pids !== pids) {
      schedule(panel); // a reading appeared or went away, or other processes hold VRAM
      continue;
    }
    const used = (detail.used_bytes || 0) / 1e9;
    const total = (detail.total_bytes || 0) / 1e9;
    const percent = total ? Math.max(0, Math.min(100, Math.round((100 * used) / total))) : 0;
    const text = (name, value) => {
      const element = reading.querySelector(`[data-reading-${name}]`);
      if (element) element.textContent = value;
    };
    text("used", used.toFixed(1));
    text("total", total.toFixed(1));
    text("power", detail.power_watts == null ? "not reported" : `${Math.round(detail.power_watts)} W`);
    text("energy", energyWords(detail.energy_joules));
    if (detail.utilization_pct != null) text("util", `${detail.utilization_pct} %`);
    const meter = reading.querySelector("[data-reading-meter]");
    if (meter) {
      meter.setAttribute("aria-valuenow", String(percent));
      meter.setAttribute("aria-valuetext", `${used.toFixed(1)} of ${total.toFixed(1)} GB used`);
      const fill = meter.querySelector(".meter__bar");
      if (fill) {
        fill.style.width = `${percent}%`;
        fill.classList.toggle("meter__bar--full", percent >= 90);
      }
    }
    const age = reading.querySelector("[data-reading-age]");
    if (age && detail.at) age.dataset.since = detail.at;
  }
  tick();
}

// -- announcements and connection status ------------------------------------------------

function announce(event) {
  const announcer = document.querySelector("[data-live-announcer]");
  if (!announcer || !event.job) return;
  const kind = event.detail?.kind === "review" ? "Review" : "Generation";
  let words = event.status;
  if (event.status === "running") words = PHASE_WORDS[event.phase] || "running";
  if (event.detail?.reason && ["failed", "blocked", "interrupted"].includes(event.status)) {
    words = `${event.status}: ${event.detail.reason}`;
  }
  announcer.textContent = `${kind} #${event.job}: ${words}`;
}

function setStatus(source, state) {
  statuses.set(source, state);
  // Several sockets (the GPU list): show the worst of them.
  const worst = [...statuses.values()].reduce((a, b) =>
    STATUS_RANK.indexOf(b) > STATUS_RANK.indexOf(a) ? b : a,
  );
  for (const element of document.querySelectorAll("[data-live-status]")) {
    element.dataset.liveStatus = worst;
    const text = element.querySelector("[data-live-status-text]");
    if (text) text.textContent = STATUS_WORDS[worst] || worst;
  }
}

function normalise(state, info) {
  if (info?.code === 4401) return "signed-out";
  if (info?.code === 4403 || info?.code === 4404) return "refused";
  const word = String(state || "").toLowerCase();
  if (["live", "open", "connected"].includes(word)) return "live";
  if (word === "connecting") return "connecting";
  if (word.startsWith("reconnect") || word === "retrying") return "reconnecting";
  return "offline";
}

function onEvent(event, stream) {
  if (!event || !event.type) return;
  // Other modules (notify.js) follow the same events without a socket of their own.
  document.dispatchEvent(new CustomEvent("artcritic:live", { detail: event }));
  if (event.type === "job.progress") {
    lastProgress.set(event.job, event);
    if (!patchProgress(event)) repaintFor("job.status", event);
    return;
  }
  if (event.type === "job.status") lastProgress.delete(event.job);
  if (event.type === "gpu.reading") {
    patchReading(event);
    return;
  }
  repaintFor(event.type, event);
  if (event.type === "job.status" && String(stream || "").startsWith("project.")) announce(event);
}

// -- cancelling without leaving the page -------------------------------------------------

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.matches("[data-cancel]")) return;
  event.preventDefault();
  const button = form.querySelector("button");
  const label = button ? button.innerHTML : "";
  if (button) {
    button.disabled = true;
    button.textContent = "Cancelling…";
  }
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: { "X-Fragment": "queue-panel" },
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const html = await response.text();
    const panel = document.getElementById("queue-panel");
    if (panel) swap(panel, html);
  } catch (error) {
    if (button) {
      button.disabled = false;
      button.innerHTML = label;
    }
    form.dataset.error = "Not cancelled: try again.";
    form.title = String(error?.message || error);
  }
});

// -- start -------------------------------------------------------------------------------

async function start() {
  calibrate(root);
  tick();
  setInterval(tick, 1000);
  // Panels the page could not paint itself are fetched at once.
  for (const panel of document.querySelectorAll("[data-live-panel][data-pending]")) schedule(panel);
  const urls = (root.dataset.ws || "").split(/\s+/).filter(Boolean);
  if (!urls.length) return;
  let live;
  try {
    live = await import("./live.js");
  } catch {
    setStatus("page", "unavailable");
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  for (const path of urls) {
    setStatus(path, "connecting");
    live.connectLive(`${scheme}://${location.host}${path}`, {
      onEvent,
      onResync: repaintAll,
      onStatus: (state, info) => setStatus(path, normalise(state, info)),
    });
  }
}

if (root) start();
