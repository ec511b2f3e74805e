// The "Suggest mappings…" page: check and pretty-print the pasted sample.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const sample = document.getElementById("id_sample");
  const status = document.getElementById("sample-status");
  const format = document.getElementById("format-sample");
  if (!sample || !status || !format) {
    return;
  }

  function check() {
    try {
      const value = JSON.parse(sample.value);
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw new Error("the sample must be a JSON object");
      }
      status.textContent = "";
      status.classList.remove("invalid");
      return value;
    } catch (err) {
      status.textContent = `Not a JSON object yet: ${err.message}`;
      status.classList.add("invalid");
      return null;
    }
  }

  format.addEventListener("click", () => {
    const value = check();
    if (value !== null) {
      sample.value = JSON.stringify(value, null, 2);
    }
  });
  sample.addEventListener("input", check);
});
