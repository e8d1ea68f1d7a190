// Forgiving, shareable controls: the window controls (templates/_window_controls.html)
// and the explorer's filters (templates/audit/_explorer_fields.html).
//
// - Shareable URLs: a request from a GET form leaves out its empty fields,
//   and since/until unless the period is custom, both when htmx sends it
//   (and pushes its URL) and when the form is submitted without htmx.
// - A 400 answer to a control (a filter the server refused) is swapped in
//   like any other, so its error shows instead of nothing happening.
// - Auto-refresh: the poll in the controls skips its turns while the tab is
//   hidden; when the tab shows again after a missed turn, it refreshes at once.
// - A date typed in From or To switches the period to "custom".
// - The explorer's event-type picker: an input with the catalogue's types
//   and removable chips, enhanced from plain checkboxes; its "+ another"
//   payload box.
//
// All of it is here, none in the templates: the Content-Security-Policy
// (sphere_stats/security.py) refuses inline handlers (onchange="…") and
// htmx's evaluated trigger filters ([…]).
//
// Loaded with `defer` by every page that includes the controls; htmx may
// insert the tag again, so it runs its set-up once.
(function () {
  if (window.sphereControls) return;
  window.sphereControls = true;

  // --- Shareable URLs ----------------------------------------------------

  function isNoise(name, value, values) {
    if (typeof value === "string" && value.trim() === "") return true;
    if ((name === "since" || name === "until") && values.period && values.period !== "custom") {
      return true;
    }
    return false;
  }

  function compact(formData) {
    const period = formData.get("period");
    const values = { period: typeof period === "string" ? period : "" };
    const kept = [];
    for (const [name, value] of formData.entries()) {
      if (!isNoise(name, value, values)) kept.push([name, value]);
    }
    for (const name of new Set([...formData.keys()])) formData.delete(name);
    for (const [name, value] of kept) formData.append(name, value);
  }

  document.addEventListener("htmx:configRequest", (event) => {
    if (event.detail.verb !== "get") return;
    compact(event.detail.formData);
  });

  // A plain GET submission (no htmx, or a form without hx-get): disable the
  // empty fields for the moment of the submission, so the browser leaves
  // them out of the URL, then enable them again (for Back).
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (event.defaultPrevented || !(form instanceof HTMLFormElement)) return;
    if ((form.getAttribute("method") || "get").toLowerCase() !== "get") return;
    const period = form.elements.namedItem("period");
    const values = { period: period && "value" in period ? period.value : "" };
    const disabled = [];
    for (const field of form.elements) {
      if (!field.name || field.disabled || !("value" in field)) continue;
      if ((field.type === "checkbox" || field.type === "radio") && !field.checked) continue;
      if (isNoise(field.name, field.value, values)) {
        field.disabled = true;
        disabled.push(field);
      }
    }
    setTimeout(() => disabled.forEach((field) => (field.disabled = false)), 0);
  });

  // --- Refused filters ---------------------------------------------------

  document.addEventListener("htmx:beforeSwap", (event) => {
    const source = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (event.detail.xhr.status === 400 && source && source.closest("form")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // --- Custom dates ------------------------------------------------------

  // In the capture phase, so the period is "custom" before the form's own
  // change handler (htmx's) reads the values.
  document.addEventListener(
    "change",
    (event) => {
      const field = event.target;
      if (!(field instanceof HTMLInputElement) || !("customPeriod" in field.dataset)) return;
      const period = field.form && field.form.elements.namedItem("period");
      if (period) period.value = "custom";
    },
    true,
  );

  // --- Auto-refresh ------------------------------------------------------

  // The poll skips its turns while the tab is hidden.
  document.addEventListener("htmx:beforeRequest", (event) => {
    if (event.detail.elt.id === "window-poll" && document.visibilityState !== "visible") {
      event.preventDefault();
    }
  });

  let lastLoad = Date.now();
  document.addEventListener("htmx:afterSettle", () => (lastLoad = Date.now()));
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    const poll = document.getElementById("window-poll");
    if (!poll) return;
    const interval = Number(poll.dataset.refresh) * 1000;
    if (interval && Date.now() - lastLoad >= interval) htmx.trigger(poll, "sphere:catch-up");
  });

  // --- The event-type picker ---------------------------------------------

  function changed(form) {
    form.dispatchEvent(new Event("change", { bubbles: true }));
  }

  function chipFor(picker, value) {
    const chip = document.createElement("span");
    chip.className = "chip";
    const hidden = document.createElement("input");
    hidden.type = "hidden";
    hidden.name = picker.dataset.name;
    hidden.value = value;
    const text = document.createElement("span");
    text.className = "chip-text";
    text.textContent = value;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "chip-remove";
    remove.setAttribute("aria-label", `Remove event type ${value}`);
    remove.textContent = "×";
    chip.append(hidden, text, remove);
    return chip;
  }

  function enhance(picker) {
    if (picker.dataset.enhanced) return;
    picker.dataset.enhanced = "1";
    const chips = picker.querySelector(".chips");
    const adder = picker.querySelector(".type-adder");
    // Server-rendered chips are checkboxes (untick and Apply without
    // JavaScript); here each becomes a hidden value and a remove button.
    for (const box of picker.querySelectorAll("input.chip-check")) {
      box.closest(".chip").replaceWith(chipFor(picker, box.value));
    }
    // The chips carry the values now; the adder only adds them.
    adder.removeAttribute("name");
    const known = new Set([...picker.querySelectorAll("datalist option")].map((o) => o.value));

    function add(value) {
      value = value.trim();
      adder.value = "";
      if (!value) return;
      const present = [...chips.querySelectorAll("input[type=hidden]")].some((i) => i.value === value);
      if (!present) chips.append(chipFor(picker, value));
      changed(adder.form);
    }

    // Picking a suggestion adds it at once; typed text is added on Enter or
    // when the field is left (an unknown name too: the results then say so).
    adder.addEventListener("input", (event) => {
      if (known.has(adder.value) && event.inputType !== "insertText") add(adder.value);
    });
    adder.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        add(adder.value);
      } else if (event.key === "Backspace" && !adder.value) {
        const last = chips.querySelector(".chip:last-child .chip-remove");
        if (last) last.focus();
      }
    });
    adder.addEventListener("change", (event) => {
      // The form's own change handler must not fire for the half-typed text.
      event.stopPropagation();
      if (adder.value.trim()) add(adder.value);
    });
    chips.addEventListener("click", (event) => {
      const button = event.target.closest(".chip-remove");
      if (!button) return;
      const chip = button.closest(".chip");
      const next = chip.nextElementSibling || chip.previousElementSibling;
      chip.remove();
      (next ? next.querySelector(".chip-remove") : adder).focus();
      changed(adder.form);
    });
  }

  // --- "+ another" payload box ------------------------------------------

  document.addEventListener("click", (event) => {
    const button = event.target instanceof Element && event.target.closest(".explorer-payload-add");
    if (!button || !button.form) return;
    const boxes = button.form.querySelectorAll("input[name=payload]");
    if (!boxes.length || boxes.length >= Number(button.dataset.payloadMax)) return;
    const box = boxes[boxes.length - 1].closest("label").cloneNode(true);
    const input = box.querySelector("input");
    input.value = "";
    input.id = "explorer-payload-" + (boxes.length + 1);
    button.before(box);
    input.focus();
  });

  function enhanceAll(root) {
    root.querySelectorAll("[data-type-picker]").forEach(enhance);
  }
  document.addEventListener("DOMContentLoaded", () => enhanceAll(document));
  document.addEventListener("htmx:load", (event) => enhanceAll(event.detail.elt));
  if (document.readyState !== "loading") enhanceAll(document);
})();
