// Live updates: poll the page's JSON every few seconds and swap the server-rendered regions.
(function () {
  "use strict";
  var url = document.body.getAttribute("data-poll");
  if (!url) return;
  var PERIOD_MS = 3000, last = {}, live = document.getElementById("live");
  function apply(data) {
    var regions = data.regions || {};
    Object.keys(regions).forEach(function (name) {
      var el = document.getElementById("r-" + name);
      if (!el || last[name] === regions[name]) return;
      // keep what the reader opened (a service's log) open across the swap
      var open = Array.prototype.map.call(el.querySelectorAll("details[open][id]"), function (d) { return d.id; });
      el.innerHTML = regions[name];
      last[name] = regions[name];
      open.forEach(function (id) { var d = document.getElementById(id); if (d) d.open = true; });
    });
    var classes = data.classes || {};
    Object.keys(classes).forEach(function (id) {
      var el = document.getElementById(id);
      if (el && el.getAttribute("class") !== classes[id]) el.setAttribute("class", classes[id]);
    });
    document.body.setAttribute("data-updated", String(Date.now()));
  }
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); throw new Error("logged out"); }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (data) { apply(data); if (live) { live.className = "live"; live.textContent = "live"; } })
      .catch(function () { if (live) { live.className = "live stale"; live.textContent = "not updating"; } })
      .then(function () { window.setTimeout(tick, document.hidden ? PERIOD_MS * 4 : PERIOD_MS); });
  }
  window.setTimeout(tick, PERIOD_MS);
})();
