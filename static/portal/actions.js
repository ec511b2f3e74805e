// Small page behaviours, wired by data attributes and classes instead of inline
// scripts or onclick= attributes, which the site-wide Content-Security-Policy refuses
// (portal/settings_csp.py).
(function () {
  "use strict";

  // <button data-portal-back>: go back to the previous page (a form kept as typed).
  document.querySelectorAll("[data-portal-back]").forEach(function (button) {
    button.addEventListener("click", function () { history.back(); });
  });

  // <button class="portal-copy" data-copy="…">: copy the text, say "Copied".
  document.querySelectorAll("button.portal-copy").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = button.dataset.copy;
      var done = function () { button.textContent = "Copied"; };
      var fallback = function () {
        var area = document.createElement("textarea");
        area.value = text; document.body.appendChild(area); area.select();
        document.execCommand("copy"); area.remove(); done();
      };
      if (navigator.clipboard && window.isSecureContext) {
        // A browser that refuses clipboard access still gets the text copied.
        navigator.clipboard.writeText(text).then(done, fallback);
      } else {
        fallback();
      }
    });
  });

  // <select data-portal-reload-param="kind">: reload the page with ?kind=<choice>, so
  // an add page shows only the fields that choice uses.
  document.querySelectorAll("select[data-portal-reload-param]").forEach(function (select) {
    select.addEventListener("change", function () {
      var params = new URLSearchParams(window.location.search);
      params.set(select.dataset.portalReloadParam, select.value);
      window.location.search = params.toString();
    });
  });
})();
