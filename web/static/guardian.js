// Guardian's dashboard works without JavaScript; this only enhances it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // The language takes effect as soon as it is chosen.
  const language = document.getElementById("language");
  if (language && language.form) {
    language.addEventListener("change", () => language.form.requestSubmit());
  }
  // A profile's filters save as soon as a toggle changes (the Save button stays for no-JS).
  // Turning every category off asks for the password: then it waits for the Save button.
  for (const form of document.querySelectorAll("form.autosave")) {
    form.addEventListener("change", (event) => {
      const password = form.elements.namedItem("current");
      if (event.target === password) return;
      const boxes = form.querySelectorAll("input[name='category']");
      if (password && boxes.length && !form.querySelector("input[name='category']:checked") && !password.value) {
        password.focus();
        return;
      }
      form.requestSubmit();
    });
  }
});
