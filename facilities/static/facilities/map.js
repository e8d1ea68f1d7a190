// The framed folium map's side of the facilities page (facilities/maps.py).
// Each facility is a Leaflet marker whose icon is text: a status dot with a
// shape per status and a label "Name · Status", so the status never rests on
// colour alone. Markers are buttons in the tab order; Enter or Space opens the
// facility's panel in the page, Escape closes it. The page drives the map
// through window.sphereMap and the map calls the page through
// window.parent.sphereFacilities (facilities/facilities.js).
(function () {
  "use strict";

  function icon(name, label) {
    const root = document.createElement("span");
    root.className = "fm-body";
    const dot = document.createElement("span");
    dot.className = "fm-dot";
    dot.setAttribute("aria-hidden", "true");
    const text = document.createElement("span");
    text.className = "fm-label";
    const status = document.createElement("span");
    status.className = "fm-status";
    status.textContent = label;
    text.append(name + " · ", status);
    root.append(dot, text);
    return root;
  }

  window.sphereMapSetup = function (map, options) {
    const markers = {};
    let selected = options.selected;

    // The page's facilities.js may not have run yet (the map can finish
    // loading first on a slow link): then open the facility's URL, which
    // shows the same panel, rather than ignore the click.
    function open(slug) {
      if (window.parent === window) {
        return;
      }
      if (window.parent.sphereFacilities) {
        window.parent.sphereFacilities.select(slug, { fromMap: true });
      } else {
        window.parent.location.href = options.detailUrl.replace("__slug__", slug);
      }
    }

    function render(slug) {
      const m = markers[slug];
      const el = m.getElement();
      if (!el) {
        return;
      }
      const chosen = slug === selected;
      el.dataset.status = m.status;
      el.classList.toggle("selected", chosen);
      if (chosen) {
        el.setAttribute("aria-current", "true");
      } else {
        el.removeAttribute("aria-current");
      }
      el.querySelector(".fm-status").textContent = m.label;
      declutter();
    }

    // Where labels would overlap (a phone's small map), the less urgent
    // marker keeps its dot and glyph and shows its label on hover or focus;
    // the label stays in the marker's accessible name.
    const urgency = { down: 0, degraded: 1, maintenance: 2, unknown: 3, up: 4 };
    function declutter() {
      const placed = [];
      const order = Object.keys(markers).sort(function (a, b) {
        return (
          (b === selected) - (a === selected) ||
          urgency[markers[a].status] - urgency[markers[b].status]
        );
      });
      const edge = map.getContainer().getBoundingClientRect().right - 4;
      order.forEach(function (slug) {
        const el = markers[slug].getElement();
        if (!el) {
          return;
        }
        el.classList.remove("fm-compact", "fm-left");
        const dot = el.querySelector(".fm-dot").getBoundingClientRect();
        let label = el.querySelector(".fm-label").getBoundingClientRect();
        if (label.right > edge) {
          // Near the right edge the label goes to the marker's left.
          el.classList.add("fm-left");
          label = el.querySelector(".fm-label").getBoundingClientRect();
        }
        const box = {
          left: Math.min(dot.left, label.left),
          right: Math.max(dot.right, label.right),
          top: Math.min(dot.top, label.top),
          bottom: Math.max(dot.bottom, label.bottom),
        };
        const hit = placed.some(function (p) {
          return box.left < p.right && p.left < box.right && box.top < p.bottom && p.top < box.bottom;
        });
        if (hit) {
          el.classList.add("fm-compact");
          placed.push(dot);
        } else {
          placed.push(box);
        }
        // Whole labels above the dots of compact markers.
        markers[slug].setZIndexOffset(slug === selected ? 2000 : hit ? 0 : 1000);
      });
    }
    map.on("zoomend moveend resize", declutter);

    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && window.parent !== window && window.parent.sphereFacilities) {
        window.parent.sphereFacilities.close();
      }
    });
    // The map is the document's main landmark, with its heading: screen
    // readers announce it, and axe finds no content outside a landmark.
    const container = map.getContainer();
    container.setAttribute("role", "main");
    container.setAttribute("aria-labelledby", "map-title");
    const title = document.createElement("h1");
    title.id = "map-title";
    title.className = "visually-hidden";
    title.textContent = options.label;
    container.prepend(title);

    return {
      map: map,
      markers: markers,
      add: function (slug, name, status, label, latlng) {
        const marker = L.marker(latlng, {
          icon: L.divIcon({
            className: "facility-marker",
            html: icon(name, label),
            iconSize: null,
            iconAnchor: [11, 11],
          }),
          keyboard: true,
          riseOnHover: true,
        }).addTo(map);
        marker.status = status;
        marker.label = label;
        markers[slug] = marker;
        const el = marker.getElement();
        el.setAttribute("data-facility", slug);
        el.addEventListener("keydown", function (event) {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            open(slug);
          }
        });
        marker.on("click", function () {
          open(slug);
        });
        render(slug);
      },
      setStatuses: function (statuses) {
        Object.keys(statuses).forEach(function (slug) {
          const m = markers[slug];
          if (!m) {
            return;
          }
          m.status = statuses[slug].status;
          m.label = statuses[slug].label;
          render(slug);
        });
      },
      select: function (slug) {
        const previous = selected;
        selected = slug;
        if (markers[previous]) {
          render(previous);
        }
        if (markers[slug]) {
          render(slug);
        }
      },
      focus: function (slug) {
        const m = markers[slug];
        if (m && m.getElement()) {
          m.getElement().focus();
        }
      },
    };
  };
})();
