/*
 * The hosted fields' own script (inside the sandbox's iframe). It answers the page's
 * Protect.js stand-in by postMessage: validate the typed card, or send it to the
 * sandbox's tokenize endpoint and hand back only {hpf_token, enc_key}. The card
 * never leaves this frame except to the sandbox.
 */
(function () {
  "use strict";
  var params = new URLSearchParams(window.location.search);
  var clientKey = params.get("clientKey") || "";
  var tokenizeUrl = new URL("tokenize", window.location.href).href;
  var STYLE_PROPERTIES = ["color", "backgroundColor", "fontFamily", "fontSize", "borderColor"];

  function value(id) {
    var element = document.getElementById(id);
    return element ? String(element.value || "").trim() : "";
  }

  function isLuhnValid(digits) {
    if (!/^[0-9]{13,19}$/.test(digits)) {
      return false;
    }
    var total = 0;
    for (var i = 0; i < digits.length; i += 1) {
      var digit = Number(digits.charAt(digits.length - 1 - i));
      if (i % 2 === 1) {
        digit *= 2;
        if (digit > 9) {
          digit -= 9;
        }
      }
      total += digit;
    }
    return total % 10 === 0;
  }

  function card() {
    return {
      number: value("pt_cc_number").replace(/[\s-]/g, ""),
      expiration_month: value("pt_cc_exp_month"),
      expiration_year: value("pt_cc_exp_year"),
      csc: value("pt_cc_csc"),
    };
  }

  function validate(typed) {
    var errors = [];
    var now = new Date();
    if (!isLuhnValid(typed.number)) {
      errors.push({ responseCode: "35", description: "Please provide a valid Credit Card Number." });
    }
    var month = /^[0-9]{1,2}$/.test(typed.expiration_month) ? Number(typed.expiration_month) : 0;
    if (month < 1 || month > 12) {
      errors.push({ responseCode: "43", description: "Please provide a valid Expiration Month." });
    }
    var year = /^[0-9]{2}$|^[0-9]{4}$/.test(typed.expiration_year) ? Number(typed.expiration_year) : 0;
    if (year > 0 && year < 100) {
      year += 2000;
    }
    if (year < now.getFullYear() || year > now.getFullYear() + 20) {
      errors.push({ responseCode: "44", description: "Please provide a valid Expiration Year." });
    } else if (month >= 1 && month <= 12 && year === now.getFullYear() && month < now.getMonth() + 1) {
      errors.push({ responseCode: "43", description: "The card has expired." });
    }
    if (!/^[0-9]{3,4}$/.test(typed.csc)) {
      errors.push({ responseCode: "148", description: "Please provide a valid CSC." });
    }
    return errors;
  }

  function describe(errors) {
    return errors
      .map(function (error) {
        return error.description || error.message;
      })
      .join(" ");
  }

  function tokenize(typed) {
    var body = JSON.stringify({
      clientKey: clientKey,
      number: typed.number,
      expiration_month: typed.expiration_month,
      expiration_year: typed.expiration_year,
      csc: typed.csc,
    });
    return fetch(tokenizeUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: body,
      credentials: "omit",
    })
      .then(function (response) {
        return response.json().then(function (answer) {
          if (response.ok && answer.hpf_token) {
            return {
              success: true,
              message: { hpf_token: answer.hpf_token, enc_key: answer.enc_key },
            };
          }
          return { success: false, message: describe(answer.errors || []) || "The card was refused." };
        });
      })
      .catch(function () {
        return { success: false, message: "The hosted fields could not reach PayTrace." };
      });
  }

  function applyStyles(styles) {
    var inputs = document.querySelectorAll("input");
    var field = (styles && (styles.input || styles.code || styles.cc)) || styles || {};
    for (var i = 0; i < inputs.length; i += 1) {
      for (var j = 0; j < STYLE_PROPERTIES.length; j += 1) {
        var name = STYLE_PROPERTIES[j];
        var dashed = name.replace(/[A-Z]/g, function (c) {
          return "_" + c.toLowerCase();
        });
        var given = field[name] || field[dashed] || field[dashed.replace(/_/g, "-")];
        if (typeof given === "string" && given.length < 80) {
          inputs[i].style[name] = given;
        }
      }
    }
  }

  window.addEventListener("message", function (event) {
    if (event.source !== window.parent) {
      return;
    }
    var data = event.data || {};
    function answer(fields) {
      fields.id = data.id;
      event.source.postMessage(fields, event.origin);
    }
    if (data.type === "pt-validate") {
      answer({ errors: validate(card()) });
    } else if (data.type === "pt-process") {
      var typed = card();
      var errors = validate(typed);
      if (errors.length) {
        answer({ result: { success: false, message: describe(errors) } });
      } else {
        tokenize(typed).then(function (result) {
          answer({ result: result });
        });
      }
    } else if (data.type === "pt-styles") {
      applyStyles(data.styles);
      answer({});
    }
  });

  if (window.parent !== window) {
    window.parent.postMessage({ type: "pt-ready" }, "*");
  }
})();
