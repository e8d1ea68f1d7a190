// The facilities page: keeps the framed folium map in step with the panel and
// the status table that htmx refreshes every minute. The map itself is never
// reloaded; its markers are recoloured through window.sphereMap (facilities/maps.py).
(function () {
  "use strict";

  function mapApi() {
    const frame = document.getElementById("facility-map");
    try {
      return frame && frame.contentWindow ? frame.contentWindow.sphereMap : null;
    } catch (e) {
      return null;
    }
  }

  function statuses() {
    const data = document.getElementById("facility-statuses");
    return data ? JSON.parse(data.textContent) : {};
  }

  function selected() {
    const panel = document.getElementById("facility-panel");
    return panel ? panel.dataset.selected || null : null;
  }

  // The table's sort links and the panel's close link were rendered with the
  // page as it then was. After a facility is picked (the panel swaps) or the
  // table is sorted (it swaps), point them at the page now shown, so the URL
  // they push, and so a reload, keeps both the open panel and the sort.
  function withSort(url, sort) {
    const u = new URL(url, window.location.href);
    if (sort && sort !== "name") {
      u.searchParams.set("sort", sort);
    } else {
      u.searchParams.delete("sort");
    }
    return u.pathname + u.search;
  }

  function syncLinks() {
    const panel = document.getElementById("facility-panel");
    const table = document.getElementById("facility-status");
    if (!panel || !table) {
      return;
    }
    document.querySelectorAll("#facility-status a[data-sort-query]").forEach(function (link) {
      const url = panel.dataset.pageUrl + link.dataset.sortQuery;
      link.setAttribute("href", url);
      link.setAttribute("hx-push-url", url);
    });
    panel.querySelectorAll("a[data-keeps-sort]").forEach(function (link) {
      const url = withSort(link.getAttribute("href"), table.dataset.sort);
      link.setAttribute("href", url);
      link.setAttribute("hx-push-url", url);
    });
  }

  function sync() {
    syncLinks();
    const api = mapApi();
    if (!api) {
      return;
    }
    api.setStatuses(statuses());
    api.select(selected());
  }

  window.sphereFacilities = {
    // Called by a marker click inside the map: the table link for that
    // facility carries the htmx request (panel swap and pushed URL).
    select: function (slug) {
      const link = document.querySelector('[data-facility-link="' + CSS.escape(slug) + '"]');
      if (link) {
        link.click();
      }
    },
    sync: sync,
  };

  document.addEventListener("htmx:afterSettle", sync);
  document.addEventListener("htmx:historyRestore", sync);
  const frame = document.getElementById("facility-map");
  if (frame) {
    frame.addEventListener("load", sync);
  }
  sync();
})();
