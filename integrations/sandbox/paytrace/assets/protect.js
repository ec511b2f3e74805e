/*
 * The PayTrace sandbox's stand-in for Protect.js (https://protect.paytrace.com/js/protect.min.js).
 *
 * PTPayment.setup({authorization: {clientKey}, styles}) puts the hosted fields (an
 * iframe served by the sandbox) into the page's #pt_hpf_form element and returns a
 * Promise. PTPayment.validate(callback) calls callback(errors), an array of
 * {responseCode, description} (empty when the fields are valid). PTPayment.process()
 * returns a Promise of {success: true, message: {hpf_token, enc_key}} or
 * {success: false, message: "<why>"}. The page never sees the card: the iframe holds
 * it and talks to the page by postMessage only, as PayTrace's cross-origin one does.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var scriptUrl = new URL(
    script && script.src ? script.src : "/sandbox/paytrace/protect/js/protect.min.js",
    window.location.href
  );
  var frameOrigin = scriptUrl.origin;
  var hpfUrl = new URL("../hpf", scriptUrl);
  var frame = null;
  var ready = null;
  var markReady = null;
  var pending = {};
  var sequence = 0;

  window.addEventListener("message", function (event) {
    if (!frame || event.source !== frame.contentWindow || event.origin !== frameOrigin) {
      return;
    }
    var data = event.data || {};
    if (data.type === "pt-ready" && markReady) {
      markReady();
      return;
    }
    var answer = pending[data.id];
    if (answer) {
      delete pending[data.id];
      answer(data);
    }
  });

  function ask(type, extra) {
    if (!ready) {
      return Promise.reject(new Error("Call PTPayment.setup first."));
    }
    return ready.then(function () {
      return new Promise(function (resolve) {
        sequence += 1;
        pending[sequence] = resolve;
        var message = { type: type, id: sequence };
        if (extra) {
          message.styles = extra;
        }
        frame.contentWindow.postMessage(message, frameOrigin);
      });
    });
  }

  window.PTPayment = {
    setup: function (options) {
      var key = options && options.authorization && options.authorization.clientKey;
      if (!key) {
        return Promise.reject(new Error("PTPayment.setup needs authorization.clientKey."));
      }
      var container = document.getElementById("pt_hpf_form");
      if (!container) {
        return Promise.reject(new Error("The page has no #pt_hpf_form element."));
      }
      frame = document.createElement("iframe");
      frame.id = "pt_hpf_frame";
      frame.title = "Card details (PayTrace hosted fields)";
      frame.style.width = "100%";
      frame.style.height = "190px";
      frame.style.border = "0";
      ready = new Promise(function (resolve) {
        markReady = resolve;
      });
      frame.src = hpfUrl.href + "?clientKey=" + encodeURIComponent(key);
      while (container.firstChild) {
        container.removeChild(container.firstChild);
      }
      container.appendChild(frame);
      var styles = options.styles;
      return ready.then(function () {
        if (styles) {
          return ask("pt-styles", styles).then(function () {
            return { frame: frame };
          });
        }
        return { frame: frame };
      });
    },
    validate: function (callback) {
      ask("pt-validate").then(
        function (data) {
          callback(data.errors || []);
        },
        function (error) {
          callback([{ responseCode: "0", description: String(error.message || error) }]);
        }
      );
    },
    process: function () {
      return ask("pt-process").then(
        function (data) {
          return data.result;
        },
        function (error) {
          return { success: false, message: String(error.message || error) };
        }
      );
    },
  };
})();
