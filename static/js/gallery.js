// The gallery: a lightbox with keyboard navigation and zoom, ticks for bulk actions, stars,
// and the next page appended as the designer scrolls. Without JavaScript every tile is a
// link to its image page and every control a form, so this only makes them quicker.

const groups = () => document.getElementById("gallery-groups");
const selection = document.querySelector("[data-selection]");
const dialog = document.querySelector("[data-lightbox-dialog]");

// ---- filters: apply on change ------------------------------------------------------------

const filters = document.querySelector("[data-gallery-filters]");
if (filters) {
  filters.addEventListener("change", () => filters.requestSubmit());
}

// ---- selection ---------------------------------------------------------------------------

function picked() {
  return [...document.querySelectorAll("[data-pick]:checked")];
}

function selectionUpdate() {
  if (!selection) return;
  const n = picked().length;
  const count = selection.querySelector("[data-selection-count]");
  count.textContent = n
    ? `${n} image${n === 1 ? "" : "s"} selected`
    : "Tick images to approve, reject, compare or download them together.";
  selection.classList.toggle("is-active", n > 0);
  for (const button of selection.querySelectorAll("[data-needs]")) {
    const [low, high] = button.dataset.needs.split("-").map(Number);
    const ok = n >= low && n <= (high || Infinity);
    button.disabled = !ok;
    if (button.dataset.needs === "2-4") {
      button.title = ok ? "Compare these side by side" : "Compare needs 2 to 4 ticked images";
    }
  }
  selection.querySelector("[data-select-none]").hidden = n === 0;
  for (const box of document.querySelectorAll("[data-pick]")) {
    box.closest(".tile")?.classList.toggle("is-picked", box.checked);
  }
}

if (selection) {
  selection.dataset.js = ""; // the bar folds to one line until something is ticked
  document.addEventListener("change", (event) => {
    if (event.target instanceof HTMLInputElement && event.target.matches("[data-pick]")) selectionUpdate();
  });
  selection.querySelector("[data-select-none]").addEventListener("click", () => {
    for (const box of picked()) box.checked = false;
    selectionUpdate();
  });
  selectionUpdate();
  // Back/forward may restore ticks the browser remembered: count them again.
  window.addEventListener("pageshow", selectionUpdate);
  setTimeout(selectionUpdate, 0);
}

// ---- stars -------------------------------------------------------------------------------

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.matches("[data-favourite]")) return;
  event.preventDefault();
  const button = form.querySelector("button");
  const input = form.querySelector('input[name="on"]');
  const on = input.value === "1";
  button.disabled = true;
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { "X-Fragment": "favourite" },
      credentials: "same-origin",
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    button.setAttribute("aria-pressed", String(on));
    button.title = on ? "Remove from favourites" : "Add to favourites";
    input.value = on ? "0" : "1";
  } catch (error) {
    form.dataset.error = "Not saved — try again.";
  } finally {
    button.disabled = false;
  }
});

// ---- lightbox ----------------------------------------------------------------------------

let current = null; // the tile shown
let opener = null;

function tiles() {
  return [...document.querySelectorAll(".tile[data-image]")];
}

function lightboxShow(tile) {
  current = tile;
  const img = dialog.querySelector("[data-lightbox-img]");
  const thumb = tile.querySelector(".tile__img");
  zoomSet(false);
  img.src = thumb.src; // the thumbnail at once, the original when it arrives
  img.alt = thumb.alt;
  img.width = Number(tile.dataset.width);
  img.height = Number(tile.dataset.height);
  const full = new Image();
  full.onload = () => {
    if (current === tile) img.src = full.src;
  };
  full.src = tile.dataset.full;
  const all = tiles();
  const index = all.indexOf(tile);
  dialog.querySelector("#lightbox-title").textContent = `Image ${tile.dataset.image} · ${index + 1} of ${all.length} on this page`;
  const info = dialog.querySelector("[data-lightbox-info]");
  info.replaceChildren(tile.querySelector("template.tile__info").content.cloneNode(true));
  const decision = tile.querySelector("form[data-decision]");
  if (decision) {
    const copy = decision.cloneNode(true);
    copy.removeAttribute("data-decision");
    copy.dataset.lightboxDecision = "";
    info.append(copy);
  }
  dialog.querySelector("[data-lightbox-prev]").disabled = index <= 0;
  dialog.querySelector("[data-lightbox-next]").disabled = index >= all.length - 1;
}

function lightboxMove(step) {
  const all = tiles();
  const next = all[all.indexOf(current) + step];
  if (next) lightboxShow(next);
}

function zoomSet(on) {
  const stage = dialog.querySelector("[data-lightbox-stage]");
  stage.classList.toggle("is-zoomed", on);
  dialog.querySelector("[data-lightbox-zoom]").setAttribute("aria-pressed", String(on));
}

if (dialog) {
  document.addEventListener("click", (event) => {
    const link = event.target instanceof Element && event.target.closest("[data-lightbox-open]");
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    opener = link;
    lightboxShow(link.closest(".tile"));
    dialog.showModal();
  });
  dialog.querySelector("[data-lightbox-close]").addEventListener("click", () => dialog.close());
  dialog.querySelector("[data-lightbox-prev]").addEventListener("click", () => lightboxMove(-1));
  dialog.querySelector("[data-lightbox-next]").addEventListener("click", () => lightboxMove(1));
  const stage = dialog.querySelector("[data-lightbox-stage]");
  dialog.querySelector("[data-lightbox-zoom]").addEventListener("click", () => zoomSet(!stage.classList.contains("is-zoomed")));
  stage.addEventListener("click", (event) => {
    const zoomed = !stage.classList.contains("is-zoomed");
    const box = stage.getBoundingClientRect();
    const x = (event.clientX - box.left) / box.width;
    const y = (event.clientY - box.top) / box.height;
    zoomSet(zoomed);
    if (zoomed) {
      // Keep the point that was clicked under the pointer.
      stage.scrollLeft = x * stage.scrollWidth - (event.clientX - box.left);
      stage.scrollTop = y * stage.scrollHeight - (event.clientY - box.top);
    }
  });
  dialog.addEventListener("close", () => {
    if (opener?.isConnected) opener.focus();
  });
  // A decision in the lightbox is the tile's decision: submit the tile's own form.
  dialog.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.matches("[data-lightbox-decision]")) return;
    event.preventDefault();
    const verdict = event.submitter?.value;
    const original = current?.querySelector("form[data-decision]");
    const button = original?.querySelector(`button[value="${verdict}"]`);
    if (original && button) original.requestSubmit(button);
    for (const b of form.querySelectorAll("button[name=verdict]")) b.setAttribute("aria-pressed", String(b.value === verdict));
  });
  dialog.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    if (key === "arrowright" || key === "j") lightboxMove(1);
    else if (key === "arrowleft" || key === "k") lightboxMove(-1);
    else if (key === "z" || key === "+" || key === "-") zoomSet(key === "-" ? false : key === "+" ? true : !stage.classList.contains("is-zoomed"));
    else if (key === "a" || key === "r") {
      const form = dialog.querySelector("[data-lightbox-decision]");
      const button = form?.querySelector(`button[value="${key === "a" ? "approve" : "reject"}"]`);
      if (form && button) form.requestSubmit(button);
    } else return;
    event.preventDefault();
  });
}

// ---- infinite scroll: the older page appended when its link comes into view --------------

let loading = false;
async function olderLoad(link) {
  if (loading) return;
  loading = true;
  try {
    const response = await fetch(link.href, { headers: { "X-Fragment": "gallery-page" }, credentials: "same-origin" });
    if (!response.ok) return;
    const holder = document.createElement("template");
    holder.innerHTML = await response.text();
    const fresh = holder.content.querySelector("#gallery-groups");
    const pager = holder.content.querySelector("#gallery-pager");
    if (!fresh || !pager) return;
    groups().append(...fresh.children);
    document.getElementById("gallery-pager").replaceWith(pager);
    observe();
  } finally {
    loading = false;
  }
}

const watcher = "IntersectionObserver" in window
  ? new IntersectionObserver((entries) => {
      for (const entry of entries) if (entry.isIntersecting) olderLoad(entry.target);
    }, { rootMargin: "600px" })
  : null;

function observe() {
  const link = document.querySelector("#gallery-pager [data-older]");
  if (watcher && link && !document.querySelector("#gallery-pager [rel=prev]")) watcher.observe(link);
}
observe();
