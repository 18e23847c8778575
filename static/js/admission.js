// Admission as the designer types: the server answers "fits" or "blocked" with the
// arithmetic (the same check that runs on submit and again before the GPU starts).
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
        show("fits", `Fits on ${answer.profile}: needs ≈ ${answer.need_gb} GB of ${answer.usable_gb} GB usable.`, []);
      } else if (answer.state === "blocked") {
        show("blocked", "Would be blocked before anything starts.", [answer.reason, `Next: ${answer.next_action}`]);
      } else if (answer.state === "invalid") {
        show("invalid", "Fix the highlighted values to see whether it fits.", []);
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
