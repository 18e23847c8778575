// Disable a form's submit button once it is sent, so a double click queues one request.
const marked = "[data-submit-once]";

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || event.defaultPrevented) return;
  for (const button of form.querySelectorAll(marked)) {
    // Disable after this tick so the button's own name/value still travels with the form.
    setTimeout(() => {
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
    }, 0);
  }
});

// Coming back through the browser's history must not leave the buttons dead.
window.addEventListener("pageshow", () => {
  for (const button of document.querySelectorAll(marked)) {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
});
