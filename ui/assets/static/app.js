// Shoal dashboard: live updates by Server-Sent Events. The server renders everything; this
// script only swaps the page's live part for the fragment each "update" event carries.
"use strict";
(function () {
  var page = document.getElementById("page");
  var live = document.getElementById("live");
  if (!page || !live || !page.dataset.events || !window.EventSource) return;
  var es = new EventSource(page.dataset.events);
  var rounds = 0;
  es.addEventListener("round", function () { rounds++; });
  es.addEventListener("update", function (e) {
    live.innerHTML = e.data;
    document.body.dataset.liveUpdates = String(rounds);
  });
  es.addEventListener("end", function () {
    es.close();
    document.body.dataset.ended = "true";
  });
  es.onerror = function () {
    // The run (and with it the dashboard of --ui) may have ended: keep what is shown.
    if (es.readyState === EventSource.CLOSED) document.body.dataset.ended = "true";
  };
})();
