// Composer helpers: the chosen model's defaults, LoRA families, seed field state.
// The server validates everything again; this only saves the designer some typing.
const form = document.querySelector("[data-composer]");
const dataNode = document.getElementById("composer-data");

if (form && dataNode) {
  const data = JSON.parse(dataNode.textContent);
  const field = (name) => form.elements.namedItem(name);
  const mode = field("model_mode");
  const lora = field("lora");
  const policy = field("seed_policy");
  const seed = field("seed");
  const note = form.querySelector("[data-defaults-note]");

  const loraNote = form.querySelector("[data-lora-note]");
  const loraServerError = Boolean(lora.closest(".field--error"));

  const loraCheck = () => {
    const model = data.models[mode.value];
    const fits = (key) => (data.loras[key] || []).includes(model?.family);
    for (const option of lora.options) {
      // Never disable the chosen option: a disabled selection is not submitted, which
      // would drop the LoRA without a word. It stays chosen and the server refuses it.
      option.disabled = Boolean(option.value) && !option.selected && !fits(option.value);
    }
    const mismatch = Boolean(lora.value) && !fits(lora.value);
    if (mismatch) lora.setAttribute("aria-invalid", "true");
    else if (!loraServerError) lora.removeAttribute("aria-invalid");
    loraNote.hidden = !mismatch;
    loraNote.textContent = mismatch
      ? `LoRA ${lora.value} does not work with ${model?.label}; choose another LoRA or None.`
      : "";
  };

  const seedCheck = () => {
    const random = policy.value === "random";
    seed.disabled = random;
    seed.placeholder = random ? "drawn on submit" : "";
  };

  mode.addEventListener("change", () => {
    const model = data.models[mode.value];
    if (!model) return;
    field("steps").value = model.steps;
    field("cfg").value = model.cfg;
    field("sampler").value = model.sampler;
    field("scheduler").value = model.scheduler;
    note.textContent = `Steps, CFG, sampler and scheduler set to ${model.label}'s defaults.`;
    note.hidden = false;
    loraCheck();
  });
  lora.addEventListener("change", loraCheck);
  policy.addEventListener("change", seedCheck);
  loraCheck();
  seedCheck();

  // Aspect-ratio presets: exact sizes the server computed (multiples of 8, within limits).
  const presets = [...form.querySelectorAll("[data-preset]")];
  const presetMark = () => {
    for (const preset of presets) {
      const on = preset.dataset.width === field("width").value && preset.dataset.height === field("height").value;
      preset.setAttribute("aria-pressed", String(on));
    }
  };
  for (const preset of presets) {
    preset.addEventListener("click", () => {
      field("width").value = preset.dataset.width;
      field("height").value = preset.dataset.height;
      presetMark();
      form.dispatchEvent(new Event("input", { bubbles: true })); // the live check asks again
    });
  }
  form.addEventListener("input", presetMark);

  // Earlier prompts: fill the prompt (and its negative) with one of them.
  for (const button of form.querySelectorAll("[data-use-prompt]")) {
    button.addEventListener("click", () => {
      field("text").value = button.dataset.text;
      field("negative_text").value = button.dataset.negative;
      field("text").focus();
      form.dispatchEvent(new Event("input", { bubbles: true }));
      counters();
    });
  }

  // Character counts: a long paste is kept whole and the count says by how much it is over.
  const counters = (event) => {
    for (const count of form.querySelectorAll("[data-count-for]")) {
      const area = document.getElementById(count.dataset.countFor);
      const limit = Number(area?.dataset.limit || 0);
      if (!area || !limit) continue;
      // The server already said it under the field; count again once the text changes.
      if (!event && area.closest(".field--error")) continue;
      const length = area.value.length;
      const over = length > limit;
      count.textContent = over
        ? `${length.toLocaleString("en")} characters: ${(length - limit).toLocaleString("en")} over the limit of ${limit.toLocaleString("en")}. Nothing is cut; shorten it to queue.`
        : length > limit * 0.8 ? `${length.toLocaleString("en")} of ${limit.toLocaleString("en")} characters` : "";
      count.classList.toggle("field__count--over", over);
      if (over) area.setAttribute("aria-invalid", "true");
      else if (!area.closest(".field--error")) area.removeAttribute("aria-invalid");
    }
  };
  form.addEventListener("input", counters);
  counters();

  const summary = form.querySelector("[data-autofocus]");
  const firstInvalid = form.querySelector(".field--error input, .field--error select, .field--error textarea");
  if (firstInvalid) firstInvalid.focus();
  else if (summary) summary.focus();
}
