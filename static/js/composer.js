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
    seed.placeholder = random ? "drawn at submission" : "";
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

  const summary = form.querySelector("[data-autofocus]");
  const firstInvalid = form.querySelector(".field--error input, .field--error select, .field--error textarea");
  if (firstInvalid) firstInvalid.focus();
  else if (summary) summary.focus();
}
