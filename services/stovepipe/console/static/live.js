// Live updates: listen to /events and, when a verdict of the Queue on screen
// arrives (or the stream (re)connects), re-read this page's fragment and swap
// it in. Without JavaScript the pages are complete; they just do not move.
(function () {
  "use strict";
  var body = document.body;
  var region = document.getElementById("live-fragment");
  var status = document.getElementById("live-status");
  if (!region || !window.EventSource) { return; }
  var queue = body.getAttribute("data-live-queue");
  var pending = false;
  var again = false;

  function refresh() {
    if (pending) { again = true; return; }
    pending = true;
    again = false;
    fetch(region.getAttribute("data-fragment"), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        // Keep the focused cell focused across the swap, for keyboard users.
        var active = document.activeElement;
        var href = active && region.contains(active) ? active.getAttribute("href") : null;
        region.innerHTML = html;
        if (href) {
          var same = region.querySelector('a[href="' + CSS.escape(href) + '"]');
          if (same) { same.focus(); }
        }
        body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {})
      .then(function () { pending = false; if (again) { refresh(); } });
  }

  var source = new EventSource("/events");
  source.onopen = function () {
    body.setAttribute("data-live", "on");
    status.textContent = "live updates on";
    refresh();
  };
  source.onerror = function () {
    body.setAttribute("data-live", "off");
    status.textContent = "live updates reconnecting";
  };
  // the console lost its own stream to the API for a while: re-read everything
  source.addEventListener("resync", refresh);
  source.addEventListener("verdict", function (e) {
    var event;
    try { event = JSON.parse(e.data); } catch (err) { return; }
    if (!queue || event.queue === queue) { refresh(); }
  });
})();
