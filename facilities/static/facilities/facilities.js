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

  function sync() {
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
