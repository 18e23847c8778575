// Ask before an action that cannot be undone (Cancel of a job): a <dialog> with the form's
// own words (data-confirm, data-confirm-yes, data-confirm-no). Only on "yes" does the form
// go on, with confirm=yes so the server knows a person agreed; without JavaScript the server
// shows the same question as a page.
let dialog = null;

function dialogMake() {
  const element = document.createElement("dialog");
  element.className = "confirm";
  element.setAttribute("aria-labelledby", "confirm-title");
  element.innerHTML = `
    <h2 id="confirm-title">Are you sure?</h2>
    <p data-confirm-text></p>
    <form method="dialog" class="confirm__buttons">
      <button type="submit" value="no" class="button" data-confirm-no autofocus>Keep it</button>
      <button type="submit" value="yes" class="button button--danger" data-confirm-yes>Yes</button>
    </form>`;
  document.body.append(element);
  return element;
}

document.addEventListener(
  "submit",
  (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
    if (form.dataset.confirmed === "yes") {
      delete form.dataset.confirmed; // the next click asks again
      return;
    }
    // Ask first; no other handler (dashboard.js's fetch, submit-once) sees this submit.
    event.preventDefault();
    event.stopImmediatePropagation();
    dialog = dialog || dialogMake();
    dialog.querySelector("#confirm-title").textContent = form.dataset.confirmTitle || "Are you sure?";
    dialog.querySelector("[data-confirm-text]").textContent = form.dataset.confirm;
    dialog.querySelector("[data-confirm-yes]").textContent = form.dataset.confirmYes || "Yes";
    dialog.querySelector("[data-confirm-no]").textContent = form.dataset.confirmNo || "Keep it";
    const submitter = event.submitter;
    dialog.returnValue = "";
    dialog.addEventListener(
      "close",
      () => {
        if (dialog.returnValue !== "yes" || !form.isConnected) {
          submitter?.focus();
          return;
        }
        const flag = form.querySelector("[data-confirmed]");
        if (flag) flag.value = "yes";
        form.dataset.confirmed = "yes";
        form.requestSubmit(submitter && form.contains(submitter) ? submitter : undefined);
      },
      { once: true },
    );
    dialog.showModal();
  },
  true,
);
