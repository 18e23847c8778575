// Approve/reject without leaving the page: post the form, swap in the returned fragment.
// Without JavaScript the same form posts and redirects back, so this is only a shortcut.
document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.matches("[data-decision]")) return;
  event.preventDefault();
  const body = new FormData(form, event.submitter);
  for (const button of form.querySelectorAll("button")) button.disabled = true;
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body,
      headers: { "X-Fragment": "decision" },
      credentials: "same-origin",
    });
    if (!response.ok) throw new Error(await response.text());
    const holder = document.createElement("div");
    holder.innerHTML = await response.text();
    const fresh = holder.firstElementChild;
    const tile = form.closest("[data-image]");
    if (tile) {
      tile.classList.remove("tile--approve", "tile--reject");
      tile.classList.add(`tile--${body.get("verdict")}`);
    }
    form.replaceWith(fresh);
  } catch (error) {
    for (const button of form.querySelectorAll("button")) button.disabled = false;
    form.dataset.error = "Not recorded — try again.";
    form.setAttribute("title", String(error.message || error));
  }
});
