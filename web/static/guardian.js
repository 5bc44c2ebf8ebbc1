// Guardian's dashboard works without JavaScript; this only enhances it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // The language takes effect as soon as it is chosen.
  const language = document.getElementById("language");
  if (language && language.form) {
    language.addEventListener("change", () => language.form.requestSubmit());
  }
});
