// Browser notifications, with permission, when one of this project's batches finishes or a
// job is blocked or fails: the designer can work in another tab while the GPU does its part.
// Events come from the dashboard (dashboard.js re-dispatches each live event on document as
// "artcritic:live"); this module never opens a socket of its own.
const root = document.querySelector("[data-dashboard]");
const offer = document.querySelector("[data-notify-offer]");
const WORDS = {
  done: "finished",
  blocked: "was blocked before it started",
  failed: "failed",
  interrupted: "was interrupted",
};

function supported() {
  return "Notification" in window;
}

function offerShow() {
  if (!offer) return;
  if (!supported()) {
    offer.hidden = true;
    return;
  }
  const state = Notification.permission;
  offer.hidden = false;
  const text = offer.querySelector("[data-notify-text]");
  const button = offer.querySelector("[data-notify-ask]");
  if (state === "granted") {
    text.textContent = "Browser notifications are on for this project's batches.";
    button.hidden = true;
  } else if (state === "denied") {
    text.textContent = "Browser notifications are blocked; allow them in the browser's site settings.";
    button.hidden = true;
  } else {
    text.textContent = "Get a browser notification when a batch finishes or a job is blocked.";
    button.hidden = false;
  }
}

if (root && offer) {
  offer.querySelector("[data-notify-ask]")?.addEventListener("click", async () => {
    if (supported()) await Notification.requestPermission();
    offerShow();
  });
  offerShow();
}

const seen = new Set();
document.addEventListener("artcritic:live", (event) => {
  const live = event.detail;
  if (!root || !live || live.type !== "job.status" || !(live.status in WORDS)) return;
  if (!supported() || Notification.permission !== "granted") return;
  if (String(live.project) !== String(root.dataset.project)) return;
  const kind = live.detail?.kind;
  // Reviews finish one by one; the batch is what a designer waits for. A failed or blocked
  // review still tells.
  if (kind === "review" && live.status === "done") return;
  const key = `${live.job}:${live.status}`;
  if (seen.has(key)) return; // a resync may deliver the same change again
  seen.add(key);
  const noun = kind === "review" ? "A Critic review" : "Your request";
  const reason = live.detail?.reason ? ` ${live.detail.reason}` : "";
  const note = new Notification(`${noun} ${WORDS[live.status]}`, {
    body: `${root.dataset.projectName || "artcritic"}: job ${live.job}.${reason}`.slice(0, 240),
    tag: `artcritic-job-${live.job}`,
  });
  note.onclick = () => window.focus();
});
