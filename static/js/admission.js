// Admission as the designer types: the server answers "fits" or "blocked" with the
// arithmetic (the same check that runs on submit and again before the GPU starts), and
// names the fields it is about: those are highlighted here, each with its own message.
const form = document.querySelector("[data-composer]");
const panel = document.querySelector("[data-admission]");

if (form && panel) {
  let timer = 0;
  let latest = 0;

  const show = (state, title, lines) => {
    panel.dataset.state = state;
    panel.replaceChildren();
    const heading = document.createElement("strong");
    heading.textContent = title;
    panel.append(heading);
    for (const line of lines.filter(Boolean)) {
      const p = document.createElement("p");
      p.textContent = line;
      panel.append(p);
    }
    panel.hidden = false;
  };

  // Highlight exactly the fields the answer names; clear the ones it no longer names.
  const highlight = (messages, names) => {
    for (const box of form.querySelectorAll("[data-field]")) {
      const name = box.dataset.field;
      const live = box.querySelector("[data-field-live]");
      const control = box.querySelector("input, select, textarea");
      const words = messages[name] || [];
      const named = words.length > 0 || names.includes(name);
      box.classList.toggle("field--flagged", named);
      if (live) {
        live.textContent = words.join(" ");
        live.hidden = words.length === 0;
      }
      if (!control) continue;
      if (named) control.setAttribute("aria-invalid", "true");
      else if (!box.classList.contains("field--error")) control.removeAttribute("aria-invalid");
      if (live && words.length) control.setAttribute("aria-describedby", live.id || (live.id = `${control.id}_live`));
    }
  };

  const check = async () => {
    const ticket = ++latest;
    const body = new FormData(form);
    try {
      const response = await fetch(panel.dataset.url, {
        method: "POST",
        body,
        headers: { "X-CSRFToken": body.get("csrfmiddlewaretoken") || "" },
        credentials: "same-origin",
      });
      if (ticket !== latest) return; // a newer edit already asked again
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const answer = await response.json();
      if (answer.state === "fits") {
        highlight({}, []);
        show("fits", `Fits on ${answer.profile}: needs ≈ ${answer.need_gb} GB of ${answer.usable_gb} GB usable.`, []);
      } else if (answer.state === "blocked") {
        highlight({}, answer.fields || []);
        const named = (answer.fields || []).map((name) => form.querySelector(`[data-field="${name}"] label`)?.textContent.replace("*", "").trim()).filter(Boolean);
        show("blocked", "Would be blocked before anything starts.", [
          answer.reason,
          `Next: ${answer.next_action}`,
          named.length ? `Highlighted: ${named.join(", ")}.` : "",
        ]);
      } else if (answer.state === "invalid") {
        const errors = answer.errors || {};
        highlight(errors, []);
        const labels = answer.labels || {};
        const names = Object.keys(errors).map((name) => labels[name] || name);
        show("invalid", `Fix the highlighted value${names.length === 1 ? "" : "s"} (${names.join(", ")}) to see whether it fits.`, []);
      } else {
        show("unavailable", "No GPU profile is active.", [answer.reason]);
      }
    } catch (error) {
      if (ticket === latest) show("unknown", "Could not check the GPU budget right now.", [String(error)]);
    }
  };

  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(check, 300);
  };
  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
  check();
}
