// Beacon admin: the progressive parts. Every page works without this file.
(function () {
  "use strict";
  var root = document.documentElement;
  // Dark mode: the header's toggle overrides the system's choice (kept in this browser).
  var saved = null;
  try { saved = localStorage.getItem("beacon-theme"); } catch (e) { saved = null; }
  if (saved === "dark" || saved === "light") { root.setAttribute("data-theme", saved); }
  function dark() {
    var t = root.getAttribute("data-theme");
    if (t) { return t === "dark"; }
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  }
  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.getElementById("theme");
    if (toggle) {
      toggle.hidden = false;
      toggle.setAttribute("aria-pressed", dark() ? "true" : "false");
      toggle.addEventListener("click", function () {
        var next = dark() ? "light" : "dark";
        root.setAttribute("data-theme", next);
        try { localStorage.setItem("beacon-theme", next); } catch (e) { /* private mode */ }
        toggle.setAttribute("aria-pressed", next === "dark" ? "true" : "false");
      });
    }
    // Buttons that copy a secret shown once.
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var target = document.getElementById(button.getAttribute("data-copy"));
        if (target && navigator.clipboard) {
          navigator.clipboard.writeText(target.textContent.trim());
          button.textContent = "Copied";
        }
      });
    });
    // Forms that ask before they act (cancel, revoke, remove).
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  });
  // htmx requests carry the session's CSRF token (the page's meta tag).
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector("meta[name=csrf-token]");
    if (meta) { event.detail.headers["X-CSRF-Token"] = meta.getAttribute("content"); }
  });
})();
