// Live updates over one WebSocket. The server's HTML stays the truth: this module says
// when to reload it (onResync, after every hello) and hands over each event in order.
//
//   const live = connectLive("/ws/projects/5/", {
//     onEvent(event, stream, seqs) { … repaint what the event is about … },
//     onResync(reason) { return reloadPanels(); }, // may return a promise; events wait for it
//     onStatus(state, info) { … },                 // "live" | "reconnecting" | "offline"
//   });
//   live.resync(); live.close();
//
// onResync reasons: "connect" (first hello), "reconnect", "gap" (a missed or reused
// number), "error" (onEvent threw), "request" (live.resync()), "overflow" (the server
// dropped frames this page was too slow to take, and sent a fresh hello instead).
// onStatus info: {code} for "offline" (4401 signed out, 4403 no access, 4404 no such
// GPU, 1000 closed by the page), {code, attempt, delayMs} for "reconnecting".
//
// Each stream ("project.5", "gpu.sim0") numbers its events 1, 2, 3 … The hello names the
// number the server's state already includes; an event must be exactly the next one. A
// number already passed is a duplicate (ignored), a jump means something was missed
// (resync), and a number that comes round again with another event means the counters
// restarted (resync). An event on several watched streams comes once, with each
// stream's number in `seqs`: every one of them must be the next, and it is applied once,
// as an event of its first stream (`stream`, `seq`).

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10_000;
const HEARTBEAT_MS = 25_000;
const REMEMBERED = 256; // applied numbers kept per stream, to tell duplicates from reuse
const REFUSED = new Set([4401, 4403, 4404]); // not signed in, not a member, no such GPU

const debug = (window.artcriticLive ??= {
  applied: 0,
  ignored: 0,
  resyncs: 0,
  reconnects: 0,
  pongs: 0,
  held: 0,
  lastSeq: {},
  status: "",
});

function socketUrl(url) {
  const target = new URL(url, window.location.href);
  if (target.protocol === "http:") target.protocol = "ws:";
  if (target.protocol === "https:") target.protocol = "wss:";
  return target.href;
}

export function connectLive(url, options = {}) {
  const {
    onEvent = () => {},
    onResync = () => {},
    onStatus = () => {},
    heartbeatMs = HEARTBEAT_MS,
    backoffFirstMs = BACKOFF_FIRST_MS,
    backoffMaxMs = BACKOFF_MAX_MS,
  } = options;
  const target = socketUrl(url);

  let socket = null;
  let stopped = false;
  let everLive = false;
  let failures = 0; // connections lost since the last hello, for the backoff
  let retryTimer = null;
  let heartbeat = null;
  let awaitingPong = false;
  let awaitingHello = null; // the reason the next hello answers, or null when live
  let baselines = new Map(); // stream → last number applied or included by a hello
  let recent = new Map(); // stream → Map(number → fingerprint of the applied event)
  let repaint = null; // the page's reload promise, while it runs
  let held = []; // events that arrived during the reload
  let status = "";

  const setStatus = (state, info = {}) => {
    status = state;
    debug.status = state;
    onStatus(state, info);
  };

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function resyncAsk(reason) {
    if (awaitingHello !== null) return; // one question at a time; the hello answers all
    awaitingHello = reason;
    held = [];
    debug.held = 0;
    send({ type: "resync" });
  }

  function helloTake(streams, serverReason) {
    const reason = awaitingHello ?? (serverReason === "overflow" ? "overflow" : "request");
    awaitingHello = null;
    repaint = null; // a reload still running for an older hello is superseded
    baselines = new Map(Object.entries(streams));
    recent = new Map();
    Object.assign(debug.lastSeq, streams);
    debug.resyncs += 1;
    if (reason === "reconnect") debug.reconnects += 1;
    failures = 0;
    everLive = true;
    if (status !== "live") setStatus("live");
    held = [];
    debug.held = 0;
    let result;
    try {
      result = onResync(reason);
    } catch (error) {
      console.error("artcritic live: onResync failed", error);
    }
    if (!result || typeof result.then !== "function") return;
    const mine = Promise.resolve(result)
      .catch((error) => console.error("artcritic live: reload failed", error))
      .finally(() => {
        if (repaint !== mine) return; // a newer hello took over
        repaint = null;
        const waiting = held;
        held = [];
        debug.held = 0;
        for (const message of waiting) eventTake(message);
      });
    repaint = mine;
  }

  function eventTake(message) {
    if (awaitingHello !== null) return; // the coming hello covers it
    if (repaint) {
      held.push(message);
      debug.held = held.length;
      return;
    }
    const { event } = message;
    const numbers = (message.seqs && typeof message.seqs === "object"
      ? Object.entries(message.seqs)
      : [[message.stream, message.seq]]
    ).filter(([name]) => baselines.has(name));
    if (!numbers.length) {
      debug.ignored += 1; // a stream this socket left at the last resync
      return;
    }
    const fingerprint = `${event?.type}|${event?.at}`;
    const passed = numbers.filter(([name, number]) => number <= baselines.get(name));
    if (passed.length === numbers.length) {
      const reused = passed.some(([name, number]) => {
        const seen = recent.get(name)?.get(number);
        return seen !== undefined && seen !== fingerprint;
      });
      if (reused) resyncAsk("gap"); // a number reused
      else debug.ignored += 1; // already applied, or already in the page
      return;
    }
    if (passed.length || numbers.some(([name, number]) => number !== baselines.get(name) + 1)) {
      resyncAsk("gap");
      return;
    }
    for (const [name, number] of numbers) {
      baselines.set(name, number);
      if (!recent.has(name)) recent.set(name, new Map());
      const applied = recent.get(name);
      applied.set(number, fingerprint);
      applied.delete(number - REMEMBERED);
      debug.lastSeq[name] = number;
    }
    const [stream, seq] = numbers[0];
    const seqs = Object.fromEntries(numbers);
    try {
      onEvent(event, stream, seqs);
    } catch (error) {
      // The page may now show something half-applied; its server HTML is the honest fix.
      console.error("artcritic live: onEvent failed", error);
      resyncAsk("error");
      return;
    }
    debug.applied += 1;
    document.dispatchEvent(
      new CustomEvent("artcritic:applied", {
        detail: {
          stream,
          seq,
          seqs,
          event,
          appliedAt: performance.timeOrigin + performance.now(),
        },
      }),
    );
  }

  function messageTake(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message?.type === "event") eventTake(message);
    else if (message?.type === "hello") helloTake(message.streams ?? {}, message.reason);
    else if (message?.type === "pong") debug.pongs += 1;
    else if (message?.type === "error") console.warn("artcritic live: server said", message.error);
  }

  function heartbeatStart(ws) {
    heartbeatStop();
    heartbeat = setInterval(() => {
      if (awaitingPong) {
        // Not a word from the server for a whole interval (no pong, or no handshake and
        // hello yet): the connection is dead even if the browser has not noticed, as a
        // half-open TCP connection can look open for minutes.
        lost(ws, 4000);
        return;
      }
      awaitingPong = true;
      send({ type: "ping" }); // nothing is sent while the socket is still connecting
    }, heartbeatMs);
  }

  function heartbeatStop() {
    clearInterval(heartbeat);
    heartbeat = null;
    awaitingPong = false;
  }

  function open() {
    retryTimer = null;
    if (stopped) return;
    const ws = new WebSocket(target);
    socket = ws;
    awaitingHello = everLive ? "reconnect" : "connect";
    heartbeatStart(ws);
    ws.addEventListener("message", (message) => {
      if (socket !== ws) return;
      awaitingPong = false; // any word from the server proves the connection alive
      messageTake(message.data);
    });
    ws.addEventListener("close", (closing) => lost(ws, closing.code));
  }

  function lost(ws, code) {
    if (socket !== ws || ws === null) return; // an old socket, already replaced
    socket = null;
    heartbeatStop();
    ws.close();
    if (stopped) return;
    if (REFUSED.has(code)) {
      stopped = true;
      setStatus("offline", { code });
      return;
    }
    const base = Math.min(backoffMaxMs, backoffFirstMs * 2 ** failures);
    const delayMs = Math.min(backoffMaxMs, base * (0.8 + 0.4 * Math.random())); // jitter
    failures += 1;
    setStatus("reconnecting", { code, attempt: failures, delayMs });
    retryTimer = setTimeout(open, delayMs);
  }

  open();

  return {
    close() {
      stopped = true;
      clearTimeout(retryTimer);
      heartbeatStop();
      const ws = socket;
      socket = null;
      if (ws) ws.close(1000);
      setStatus("offline", { code: 1000 });
    },
    resync() {
      resyncAsk("request");
    },
  };
}
