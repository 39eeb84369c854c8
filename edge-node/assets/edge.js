// The edge node UI's one script: a file chosen in an <input type=file data-into=ID> is
// read into the textarea ID, so CSV sheets and PEM files go through ordinary forms.
"use strict";
document.addEventListener("change", (e) => {
  const input = e.target;
  if (!(input instanceof HTMLInputElement) || !input.dataset.into || !input.files?.length) return;
  const target = document.getElementById(input.dataset.into);
  if (!target) return;
  input.files[0].text().then((text) => { target.value = text; });
});
