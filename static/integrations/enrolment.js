/*
 * The card enrolment pages (issue 15): PayTrace's hosted fields in #pt_hpf_form.
 *
 * The card is typed into PayTrace's iframe; this script never reads it. On submit it
 * asks the fields to validate, then to process, and posts the form with only the
 * hpf_token/enc_key pair they return. Loaded as a file (no inline script: the pages'
 * Content-Security-Policy allows none).
 */
(function () {
  "use strict";

  var form = document.getElementById("enrol-form");
  if (!form) {
    return;
  }
  var button = document.getElementById("enrol-submit");
  var problems = document.getElementById("card-errors");
  var clientKey = form.getAttribute("data-client-key") || "";

  function say(lines) {
    if (!problems) {
      return;
    }
    problems.textContent = "";
    if (!lines.length) {
      problems.classList.add("enrol-hidden");
      return;
    }
    lines.forEach(function (line) {
      var p = document.createElement("span");
      p.textContent = line;
      problems.appendChild(p);
      problems.appendChild(document.createElement("br"));
    });
    problems.classList.remove("enrol-hidden");
  }

  function ready(on) {
    if (button) {
      button.disabled = !on;
    }
  }

  // Another PayTrace account means another client key: reload the page for it.
  var account = document.getElementById("id_paytrace");
  if (account && !account.disabled) {
    account.addEventListener("change", function () {
      var custno = document.getElementById("id_custno");
      var query = "?paytrace=" + encodeURIComponent(account.value);
      if (custno && custno.value) {
        query += "&custno=" + encodeURIComponent(custno.value);
      }
      window.location.search = query;
    });
  }

  // The Sage Pro customer's name, once the number is typed.
  var custnoInput = document.getElementById("id_custno");
  var nameOut = document.getElementById("customer-name");
  var lookupUrl = form.getAttribute("data-lookup-url");
  if (custnoInput && nameOut && lookupUrl && !custnoInput.disabled) {
    custnoInput.addEventListener("change", function () {
      var value = custnoInput.value.trim();
      nameOut.textContent = "";
      if (!value) {
        return;
      }
      var url = lookupUrl + "?paytrace=" + encodeURIComponent(account ? account.value : "") +
        "&custno=" + encodeURIComponent(value);
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.json(); })
        .then(function (answer) {
          nameOut.textContent = answer.company || answer.error || "";
          nameOut.classList.toggle("enrol-unknown", !answer.company);
        })
        .catch(function () { nameOut.textContent = ""; });
    });
  }

  if (!clientKey) {
    ready(false);
    return;
  }
  if (!window.PTPayment) {
    ready(false);
    say(["The card fields could not load. Reload the page; if this persists, tell the portal's administrators."]);
    return;
  }

  ready(false);
  window.PTPayment.setup({
    authorization: { clientKey: clientKey },
    styles: {
      code: { "font_size": "14px" },
      cc: { "font_size": "14px" },
      exp: { "font_size": "14px" }
    }
  }).then(function () {
    ready(true);
  }, function () {
    say(["The card fields could not start. Reload the page."]);
  });

  var sending = false;
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (sending) {
      return;
    }
    sending = true;
    ready(false);
    say([]);
    function fail(lines) {
      sending = false;
      ready(true);
      say(lines);
    }
    window.PTPayment.validate(function (errors) {
      if (errors && errors.length) {
        fail(errors.map(function (e) { return e.description || String(e); }));
        return;
      }
      window.PTPayment.process().then(function (result) {
        var message = result && result.message;
        if (!result || !result.success || !message || !message.hpf_token) {
          fail([typeof message === "string" && message ? message : "The card fields did not accept the card. Check it and try again."]);
          return;
        }
        form.elements.namedItem("hpf_token").value = message.hpf_token;
        form.elements.namedItem("enc_key").value = message.enc_key;
        HTMLFormElement.prototype.submit.call(form);
      }, function () {
        fail(["The card fields could not reach PayTrace. Try again."]);
      });
    });
  });
}());
