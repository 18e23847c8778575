// The review screen: decide, undo and move between images by keyboard or pointer without
// reloading, and repaint when another member decides or the Critic answers.
// Without JavaScript every control is a plain form or link; this module only swaps in the
// fragments the server renders (templates/studio/review.html: review-root, review-live).

const screen = document.querySelector("[data-review]");
if (screen) reviewScreen(screen);

function reviewScreen(screen) {
  const announcer = screen.querySelector("#review-announcer");
  const help = screen.querySelector("#review-help");
  let busy = false; // one request at a time: a double key press is one decision
  let popped = false; // the user went back or forward while a request was running
  let helpOpener = null;

  const root = () => screen.querySelector("#review-root");
  const shownImage = () => Number(root()?.dataset.image || 0);

  function announce(text) {
    // Clear first so that the same sentence twice is announced twice.
    announcer.textContent = "";
    window.setTimeout(() => { announcer.textContent = text; }, 30);
  }

  function showError(text) {
    const slot = root()?.querySelector("[data-review-error]");
    const message = `Not done: ${text}`.trim();
    if (slot) {
      slot.textContent = message;
      slot.hidden = false;
    } else {
      announce(message);
    }
  }

  function parse(html) {
    const holder = document.createElement("template");
    holder.innerHTML = html;
    return holder.content;
  }

  // Fetch a new review-root (a link, a decision, an undo) and put it in place of the old one.
  async function go(url, { body = null, history: how = "push" } = {}) {
    if (busy) {
      if (how === "replace") popped = true;
      return;
    }
    busy = true;
    screen.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(url, {
        method: body ? "POST" : "GET",
        body,
        headers: { "X-Fragment": "review" },
        credentials: "same-origin",
      });
      if (!response.ok) {
        const text = (await response.text()).slice(0, 300);
        showError(response.status === 400 ? text : `the server answered ${response.status}. Try again.`);
        return;
      }
      const fresh = parse(await response.text()).querySelector("#review-root");
      if (!fresh) throw new Error("unexpected answer");
      root().replaceWith(fresh);
      const address = response.headers.get("X-Review-Url");
      if (address && how === "push" && address !== location.pathname + location.search) {
        history.pushState({ review: true }, "", address);
      } else if (address) {
        history.replaceState({ review: true }, "", address);
      }
      const heading = fresh.querySelector("#review-image-heading");
      if (heading) heading.focus({ preventScroll: false });
      document.title = document.title.replace(/^Review( image \d+)?/, `Review${fresh.dataset.image ? ` image ${fresh.dataset.image}` : ""}`);
      announce([fresh.dataset.notice, heading?.textContent.replace(/\s+/g, " ").trim()].filter(Boolean).join(" "));
    } catch (error) {
      showError("nothing was sent or the answer was lost; check the connection and try again.");
    } finally {
      busy = false;
      screen.removeAttribute("aria-busy");
      if (popped) {
        popped = false;
        go(location.href, { history: "replace" }); // show what the location bar now says
      }
    }
  }

  // Repaint the regions a live event can change; keep open <details> and focus where they were.
  async function refresh({ all }) {
    const current = root();
    if (!current) return;
    let response;
    try {
      response = await fetch(current.dataset.url, {
        headers: { "X-Fragment": "live" },
        credentials: "same-origin",
      });
    } catch {
      return; // the next event or resync tries again
    }
    if (!response.ok || root() !== current) return; // the user moved on meanwhile
    const parts = parse(await response.text());
    const focusedId = document.activeElement?.id;
    const wanted = all
      ? null
      : new Set(["review-tabs", "review-agreement", "review-nav", "review-undo"]);
    for (const fresh of Array.from(parts.children)) {
      if (!fresh.id || (wanted && !wanted.has(fresh.id))) continue;
      const old = document.getElementById(fresh.id);
      if (!old) continue;
      for (const details of old.querySelectorAll("details[id][open]")) {
        fresh.querySelector(`#${details.id}`)?.setAttribute("open", "");
      }
      old.replaceWith(fresh);
      if (fresh.id === "review-decisions") pressedSet(fresh.dataset.myVerdict || "");
    }
    if (focusedId && !document.activeElement?.id) document.getElementById(focusedId)?.focus();
  }

  function pressedSet(verdict) {
    for (const button of root()?.querySelectorAll("[data-review-decide] button[name=verdict]") || []) {
      button.setAttribute("aria-pressed", String(button.value === verdict));
    }
  }

  function submitWith(form, submitter) {
    if (!form || busy) return;
    if (submitter) form.requestSubmit(submitter);
    else form.requestSubmit();
  }

  // ---- Forms and links inside the screen ----

  screen.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    if (!form.matches("[data-review-decide], [data-review-undo]")) return;
    event.preventDefault();
    if (busy) return;
    const body = new FormData(form, event.submitter);
    const slot = form.querySelector("[data-review-error]");
    if (slot) slot.hidden = true;
    go(form.action, { body });
  });

  screen.addEventListener("click", (event) => {
    const link = event.target instanceof Element && event.target.closest("a[data-review-link]");
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    go(link.href);
  });

  window.addEventListener("popstate", () => go(location.href, { history: "replace" }));

  // ---- Keyboard ----

  function typing(element) {
    if (!(element instanceof HTMLElement)) return false;
    if (element.isContentEditable || element.tagName === "TEXTAREA" || element.tagName === "SELECT") return true;
    return element.tagName === "INPUT" && !["button", "submit", "checkbox", "radio", "reset"].includes(element.type);
  }

  function helpOpen() {
    if (help.open) return;
    helpOpener = document.activeElement;
    help.showModal();
  }

  help.addEventListener("close", () => {
    if (helpOpener instanceof HTMLElement && helpOpener.isConnected) helpOpener.focus();
    else root()?.querySelector("#review-image-heading")?.focus();
  });
  screen.querySelector("[data-review-help-open]")?.addEventListener("click", helpOpen);

  const actions = {
    a: () => { const f = root()?.querySelector("[data-review-decide]"); submitWith(f, f?.querySelector('button[value="approve"]')); },
    r: () => { const f = root()?.querySelector("[data-review-decide]"); submitWith(f, f?.querySelector('button[value="reject"]')); },
    j: () => root()?.querySelector("[data-review-next]")?.click(),
    arrowright: () => root()?.querySelector("[data-review-next]")?.click(),
    k: () => root()?.querySelector("[data-review-prev]")?.click(),
    arrowleft: () => root()?.querySelector("[data-review-prev]")?.click(),
    u: () => submitWith(root()?.querySelector("[data-review-undo]")),
    n: () => root()?.querySelector("#review-note")?.focus(),
    "?": helpOpen,
  };

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing || help.open) return;
    const target = event.target;
    if (typing(target)) {
      if (event.key === "Escape" && target.id === "review-note") {
        event.preventDefault();
        root()?.querySelector("#review-image-heading")?.focus();
      }
      return; // shortcuts are off while typing; Ctrl+Z stays the text field's own undo
    }
    const key = (event.key || "").toLowerCase();
    const command = event.ctrlKey || event.metaKey;
    if (command && !event.altKey && !event.shiftKey && key === "z") {
      event.preventDefault();
      if (!event.repeat) actions.u();
      return;
    }
    if (command || event.altKey || !(key in actions)) return;
    // A button or link with focus keeps its own Enter/Space; letters are ours.
    event.preventDefault();
    if (event.repeat) return; // a held key is one press
    actions[key]();
  });

  // ---- Touch: swipe the image left for the next one, right for the previous ----

  let swipe = null;
  let swiped = false;
  screen.addEventListener("pointerdown", (event) => {
    if (event.pointerType !== "touch" || !event.target.closest?.(".review-figure__frame")) return;
    swipe = { x: event.clientX, y: event.clientY };
  });
  screen.addEventListener("pointercancel", () => { swipe = null; });
  screen.addEventListener("pointerup", (event) => {
    if (!swipe || event.pointerType !== "touch") return;
    const dx = event.clientX - swipe.x;
    const dy = event.clientY - swipe.y;
    swipe = null;
    // A clear sideways move; a tap or a vertical scroll is left alone.
    if (Math.abs(dx) < 60 || Math.abs(dx) < 2 * Math.abs(dy)) return;
    swiped = true;
    (dx < 0 ? actions.j : actions.k)();
  });
  screen.addEventListener("click", (event) => {
    // The frame is a link to the full PNG: a swipe must not open it.
    if (swiped && event.target.closest?.(".review-figure__frame")) event.preventDefault();
    swiped = false;
  }, true);

  // ---- Live updates ----

  const status = screen.querySelector("[data-live-status]");
  const statusText = status?.querySelector("[data-live-text]");
  const words = {
    connecting: "connecting…",
    live: "on",
    reconnecting: "reconnecting…",
    offline: "off — reload the page to see others' decisions",
  };
  function statusSet(state) {
    if (!status) return;
    status.dataset.state = String(state);
    statusText.textContent = words[state] || String(state);
  }

  const relevant = new Set(["decision.recorded", "review.created", "image.created"]);
  function onEvent(event) {
    if (!event || !relevant.has(event.type)) return;
    if (Number(event.project) !== Number(screen.dataset.project)) return;
    const image = Number(event.detail?.image || 0);
    // The shown image: repaint its review and decisions too; any other: the counts.
    refresh({ all: image !== 0 && image === shownImage() });
  }

  statusSet("connecting");
  import(screen.dataset.liveModule)
    .then(({ connectLive }) => {
      connectLive(screen.dataset.liveSocket, {
        onEvent,
        // After every (re)connect the page may have missed events: repaint from the server.
        onResync: () => refresh({ all: true }),
        onStatus: statusSet,
      });
    })
    .catch(() => statusSet("offline"));
}
