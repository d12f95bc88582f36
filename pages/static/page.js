// Beacon status page: uptime bars with per-day details, and live updates without reload.
(function () {
  "use strict";
  var NAMES = {o: "Operational", m: "Under maintenance", d: "Degraded performance",
    p: "Partial outage", x: "Major outage", n: "No data"};
  var tip, titles = {}, shown = "", d0 = "";

  function day(d0, i) {
    var d = new Date(d0 + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + i);
    return d.toLocaleDateString(undefined, {timeZone: "UTC", year: "numeric", month: "short", day: "numeric"});
  }

  function details(bar, i) {
    var code = bar.dataset.s.charAt(i), extra = (bar.dataset.x || "").split(";"), up = "", incs = [];
    for (var k = 0; k < extra.length; k++) {
      var f = extra[k].split(":");
      if (+f[0] === i) { up = f[1]; incs = f[2] ? f[2].split(",") : []; }
    }
    if (!up && code !== "n" && code !== "m") up = "100";
    var text = day(d0, i) + ": " + NAMES[code];
    if (up) text += ", " + up + "% uptime";
    text += incs.length ? ", " + incs.length + (incs.length > 1 ? " incidents" : " incident") : ", no incidents";
    return {text: text, incs: incs};
  }

  function show(el) {
    var bar = el.parentNode, info = details(bar, +el.dataset.i);
    tip.textContent = info.text;
    info.incs.forEach(function (id) {
      var p = document.createElement("div");
      p.textContent = titles[id] || id;
      tip.appendChild(p);
    });
    var r = el.getBoundingClientRect();
    tip.hidden = false;
    tip.style.top = (window.scrollY + r.bottom + 6) + "px";
    tip.style.left = Math.max(4, Math.min(window.scrollX + r.left - 120, document.documentElement.clientWidth - 270)) + "px";
  }

  function hide() { tip.hidden = true; }

  // A phone shows the last 30 days, as Statuspage does (page.css switches at the same width).
  var PHONE = window.matchMedia ? window.matchMedia("(max-width: 600px)") : null;

  function build(bar) {
    var s = bar.dataset.s, count = PHONE && PHONE.matches ? Math.min(30, s.length) : s.length, html = "";
    for (var i = s.length - count; i < s.length; i++) {
      var last = i === s.length - 1;
      html += '<i class="' + s.charAt(i) + '" data-i="' + i + '" role="img" tabindex="' + (last ? 0 : -1) +
        '" aria-label="' + details(bar, i).text.replace(/"/g, "&quot;") + '"></i>';
    }
    bar.innerHTML = html;
    bar.removeAttribute("aria-label");
    bar.setAttribute("role", "group");
    var name = bar.parentNode.querySelector(".nm").textContent;
    bar.setAttribute("aria-label", name + ": uptime per day, last " + count + " days");
  }

  function move(e) {
    var el = e.target;
    if (el.tagName !== "I") return;
    var k = {ArrowLeft: -1, ArrowRight: 1, Home: -999, End: 999}[e.key];
    if (!k) { if (e.key === "Escape") hide(); return; }
    e.preventDefault();
    var all = el.parentNode.children, at = Array.prototype.indexOf.call(all, el);
    var i = Math.max(0, Math.min(all.length - 1, at + k));
    el.tabIndex = -1;
    all[i].tabIndex = 0;
    all[i].focus();
  }

  function init() {
    var data = document.getElementById("titles");
    titles = data ? JSON.parse(data.textContent) : {};
    var section = document.getElementById("services");
    d0 = section ? section.dataset.d0 : "";
    if (!tip) {
      tip = document.createElement("div");
      tip.id = "tip"; tip.setAttribute("role", "tooltip"); tip.hidden = true;
      document.body.appendChild(tip);
    }
    document.querySelectorAll(".bar[data-s]").forEach(function (bar) {
      build(bar);
      bar.addEventListener("mouseover", function (e) { if (e.target.tagName === "I") show(e.target); });
      bar.addEventListener("focusin", function (e) { if (e.target.tagName === "I") show(e.target); });
      bar.addEventListener("mouseleave", hide);
      bar.addEventListener("focusout", hide);
      bar.addEventListener("keydown", move);
    });
  }

  function refresh() {
    fetch(location.href, {cache: "no-cache", credentials: "same-origin"}).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (!html) return;
      var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
      var main = document.getElementById("main");
      if (!fresh || fresh.innerHTML === shown) return;
      var focus = document.activeElement && document.activeElement.id;
      shown = fresh.innerHTML;
      main.innerHTML = shown;
      init();
      if (focus && document.getElementById(focus)) document.getElementById(focus).focus();
    }).catch(function () {});
  }

  function live() {
    var url = document.body.dataset.live;
    if (!url || !document.getElementById("main")) return;
    if (window.EventSource) {
      // Every message (the first one too, sent on connect) means "check the page".
      new EventSource(url).onmessage = refresh;
    }
    // A proxy that buffers the stream must not freeze the page: check now and then anyway
    // (a 304 when nothing changed).
    setInterval(refresh, window.EventSource ? 60000 : 30000);
  }

  var main = document.getElementById("main");
  if (main) shown = main.innerHTML;  // before init() adds the bars
  init();
  live();
  // Turning a tablet or resizing a window across the phone width redraws the bars.
  if (PHONE && PHONE.addEventListener) PHONE.addEventListener("change", function () {
    document.querySelectorAll(".bar[data-s]").forEach(build);
  });
})();
