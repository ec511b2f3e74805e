/*
 * The sandbox's "try the hosted fields" page: what an enrolment page does with
 * Protect.js, with nothing of the portal. Shows the token it gets, never the card.
 */
(function () {
  "use strict";
  var form = document.getElementById("try_form");
  var output = document.getElementById("try_result");
  var button = document.getElementById("try_submit");
  function show(text) {
    output.textContent = text;
  }
  window.PTPayment.setup({
    authorization: { clientKey: form.getAttribute("data-client-key") },
    styles: { input: { font_size: "15px" } },
  }).then(
    function () {
      button.disabled = false;
      show("Ready: type a test card.");
    },
    function (error) {
      show("The hosted fields did not load: " + error.message);
    }
  );
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    window.PTPayment.validate(function (errors) {
      if (errors.length) {
        show(errors.map(function (e) { return e.responseCode + ": " + e.description; }).join("\n"));
        return;
      }
      window.PTPayment.process().then(function (result) {
        if (result.success) {
          show("hpf_token: " + result.message.hpf_token + "\nenc_key: " + result.message.enc_key);
        } else {
          show("Refused: " + result.message);
        }
      });
    });
  });
})();
