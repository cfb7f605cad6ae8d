// bullworker dashboard: a little progressive enhancement. Every page works without it.
// - <time> elements get the local time and "3 min ago" as a tooltip;
// - the queues table refreshes its counts every few seconds (data-refresh), while the tab is visible;
(function () {
  "use strict";

  function ago(ms) {
    var s = Math.round(ms / 1000);
    var future = s < 0;
    s = Math.abs(s);
    var text = s < 60 ? s + " s" : s < 7200 ? Math.round(s / 60) + " min" : s < 172800 ? Math.round(s / 3600) + " h" : Math.round(s / 86400) + " d";
    return future ? "in " + text : text + " ago";
  }

  function localTimes(root) {
    var times = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var when = new Date(times[i].getAttribute("datetime"));
      if (!isNaN(when)) {
        times[i].title = when.toLocaleString() + " (" + ago(Date.now() - when.getTime()) + ")";
      }
    }
  }

  function refreshTable(table) {
    var seconds = parseInt(table.getAttribute("data-refresh"), 10);
    if (!seconds || !window.fetch || !window.DOMParser) {
      return;
    }
    setInterval(function () {
      if (document.hidden) {
        return;
      }
      fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (!html) {
            return;
          }
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(table.id);
          if (!fresh) {
            return;
          }
          var oldRows = table.tBodies[0].rows;
          var newBody = fresh.tBodies[0];
          for (var i = 0; i < oldRows.length && i < newBody.rows.length; i++) {
            if (oldRows[i].innerHTML !== newBody.rows[i].innerHTML) {
              newBody.rows[i].className = "refreshed";
            }
          }
          table.replaceChild(document.importNode(newBody, true), table.tBodies[0]);
          localTimes(table);
        })
        .catch(function () {});
    }, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    var tables = document.querySelectorAll("table[data-refresh]");
    for (var i = 0; i < tables.length; i++) {
      refreshTable(tables[i]);
    }
  });
})();
