// The edge node UI's one script: a file chosen in an <input type=file data-into=ID> is
// read into the textarea ID, so CSV sheets and PEM files go through ordinary forms; a
// form field marked data-when=KEY data-is=VALUE shows only while the select KEY is VALUE
// (or while it shows an error).
"use strict";
document.addEventListener("change", (e) => {
  const input = e.target;
  if (!(input instanceof HTMLInputElement) || !input.dataset.into || !input.files?.length) return;
  const target = document.getElementById(input.dataset.into);
  if (!target) return;
  input.files[0].text().then((text) => { target.value = text; });
});

function showWhen(form) {
  for (const field of form.querySelectorAll(".field[data-when]")) {
    const choice = form.elements.namedItem(field.dataset.when);
    if (!(choice instanceof HTMLSelectElement)) continue;
    field.hidden = choice.value !== field.dataset.is && !field.querySelector(".field-error");
  }
}
document.addEventListener("change", (e) => {
  if (e.target instanceof HTMLSelectElement && e.target.form) showWhen(e.target.form);
});
document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form")) showWhen(form);
});
