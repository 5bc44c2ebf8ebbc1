// Guardian's dashboard works without JavaScript; this only enhances it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // The language takes effect as soon as it is chosen.
  const language = document.getElementById("language");
  if (language && language.form) {
    language.addEventListener("change", () => language.form.requestSubmit());
  }
  // A profile's filters save as soon as a toggle changes (the Save button stays for no-JS).
  for (const form of document.querySelectorAll("form.autosave")) {
    form.addEventListener("change", () => form.requestSubmit());
  }
});
