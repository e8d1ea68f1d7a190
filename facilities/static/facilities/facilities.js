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

  // Who opened the panel, to give focus back when it closes: a marker in the
  // map ({map: slug}) or a name in the table ({link: slug}).
  let opener = null;
  // Set by a user's pick, not by the minute's refresh: the new panel is
  // scrolled into view (on a phone it sits below the map) and focused.
  let reveal = false;
  let returnFocus = false;

  function revealPanel() {
    const panel = document.getElementById("facility-panel");
    if (!panel) {
      return;
    }
    panel.scrollIntoView({ block: "nearest" });
    const heading = panel.querySelector("h2");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
  }

  function giveFocusBack() {
    if (!opener) {
      return;
    }
    if (opener.map) {
      const frame = document.getElementById("facility-map");
      const api = mapApi();
      if (frame && api) {
        frame.focus();
        api.focus(opener.map);
        frame.scrollIntoView({ block: "nearest" });
      }
    } else {
      const link = document.querySelector('[data-facility-link="' + CSS.escape(opener.link) + '"]');
      if (link) {
        link.focus();
      }
    }
    opener = null;
  }

  function sync() {
    syncLinks();
    if (reveal) {
      reveal = false;
      revealPanel();
    }
    if (returnFocus && !selected()) {
      returnFocus = false;
      giveFocusBack();
    }
    const api = mapApi();
    if (!api) {
      return;
    }
    api.setStatuses(statuses());
    api.select(selected());
  }

  function close() {
    const link = document.querySelector("#facility-panel .panel-close");
    if (link) {
      returnFocus = true;
      link.click();
    }
  }

  window.sphereFacilities = {
    // Called by a marker click or key inside the map: the table link for
    // that facility carries the htmx request (panel swap and pushed URL).
    select: function (slug, how) {
      const link = document.querySelector('[data-facility-link="' + CSS.escape(slug) + '"]');
      if (link) {
        link.click();
        if (how && how.fromMap) {
          opener = { map: slug };
        }
      }
    },
    close: close,
    sync: sync,
  };

  document.addEventListener("click", function (event) {
    const link = event.target.closest && event.target.closest("[data-facility-link]");
    if (link) {
      opener = { link: link.dataset.facilityLink };
      reveal = true;
    }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || !selected()) {
      return;
    }
    const field = event.target.closest && event.target.closest("input, select, textarea");
    if (!field) {
      close();
    }
  });
  // The minute's refresh replaces the panel: keep the focus in it.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const panel = document.getElementById("facility-panel");
    if (panel && event.detail.target === panel && panel.contains(document.activeElement)) {
      reveal = reveal || document.activeElement !== document.body;
    }
  });
  document.addEventListener("htmx:afterSettle", sync);
  document.addEventListener("htmx:historyRestore", sync);
  const frame = document.getElementById("facility-map");
  if (frame) {
    frame.addEventListener("load", sync);
  }
  sync();
})();
