"""The folium map of facilities, with every asset served from /static/.

folium's defaults load Leaflet, jQuery, Bootstrap, Font Awesome and
Leaflet.awesome-markers from CDNs; `vendored_assets` swaps each for its
vendored copy (static/vendor/VENDOR.md maps the names), and fails loudly if a
folium upgrade adds an asset nobody has vendored. The only remote URL left is
the tile server (settings.MAP_TILE_URL); when it cannot be reached, a bundled
world outline drawn beneath the tiles still gives the markers geography.

The map is a document of its own (folium's page styles `html, body`), shown
in an iframe by the facilities page. The page and the map talk through two
small objects: `window.sphereMap` here and `window.sphereFacilities` there.
"""

from collections.abc import Iterable

import folium
from branca.element import Element, MacroElement
from django.conf import settings
from django.templatetags.static import static
from django.urls import reverse
from folium.template import Template

from facilities.models import Facility
from facilities.status import STATE_COLOURS, STATE_LABELS, CurrentStatus

# folium name -> path under STATIC_URL (static/vendor/VENDOR.md).
VENDORED_JS = {
    "leaflet": "vendor/leaflet/leaflet.js",
    "jquery": "vendor/jquery/jquery.min.js",
    "bootstrap": "vendor/bootstrap/js/bootstrap.bundle.min.js",
    "awesome_markers": "vendor/awesome-markers/leaflet.awesome-markers.js",
}
VENDORED_CSS = {
    "leaflet_css": "vendor/leaflet/leaflet.css",
    "bootstrap_css": "vendor/bootstrap/css/bootstrap.min.css",
    "glyphicons_css": "vendor/bootstrap3-glyphicons/css/bootstrap3-glyphicons.min.css",
    "awesome_markers_font_css": "vendor/fontawesome/css/all.min.css",
    "awesome_markers_css": "vendor/awesome-markers/leaflet.awesome-markers.css",
    "awesome_rotate_css": "vendor/awesome-rotate/leaflet.awesome.rotate.min.css",
}
WORLD_GEOJSON = "vendor/world/world.geojson"
# Continental US, where the demo facilities are, when there are none to fit.
DEFAULT_CENTER = (39.5, -98.35)


def vendored_assets(defaults: Iterable[tuple[str, str]], vendored: dict[str, str]) -> list:
    """folium's (name, CDN URL) list with each URL replaced by its static one;
    the names stay, because folium removes duplicate assets by name."""
    missing = [name for name, _ in defaults if name not in vendored]
    if missing:
        raise LookupError(
            f"folium asset(s) {missing} are not vendored; see static/vendor/VENDOR.md"
        )
    return [(name, static(vendored[name])) for name, _ in defaults]


class MapApi(MacroElement):
    """`window.sphereMap`: the markers by slug, recolouring and selection."""

    _template = Template(
        """
        {% macro header(this, kwargs) %}
        <style>
          .leaflet-container { background: #dce8f2; font: 13px system-ui, sans-serif; }
          .facility-tip b { font-weight: 600; }
          /* The selection ring marks the chosen facility; no focus box too. */
          path.facility-marker:focus { outline: none; }
        </style>
        {% endmacro %}
        {% macro script(this, kwargs) %}
        window.sphereMap = (function (map) {
          const colours = {{ this.colours|tojson }};
          const markers = {};
          let selected = {{ this.selected|tojson }};
          const detailUrl = {{ this.detail_url|tojson }};
          function tip(name, label) {
            const b = document.createElement("b");
            b.textContent = name;
            const div = document.createElement("div");
            div.className = "facility-tip";
            div.append(b, " · " + label);
            return div;
          }
          function style(slug) {
            const m = markers[slug];
            const chosen = slug === selected;
            m.setStyle({fillColor: colours[m.status], color: chosen ? "#0f1b2d" : "#ffffff",
                        weight: chosen ? 4 : 2});
            m.setRadius(chosen ? 13 : 10);
            if (chosen) { m.bringToFront(); }
          }
          return {
            map: map,
            markers: markers,
            add: function (slug, name, status, label, marker) {
              markers[slug] = marker;
              marker.slug = slug;
              marker.facilityName = name;
              marker.status = status;
              // Already on the map (folium adds it first); tag its SVG path so
              // the marker can be found by tests and styled.
              const el = marker.getElement();
              if (el) { el.setAttribute("data-facility", slug); el.classList.add("facility-marker"); }
              marker.bindTooltip(tip(name, label), {direction: "top", offset: [0, -8]});
              marker.on("click", function () {
                if (window.parent === window) { return; }
                if (window.parent.sphereFacilities) {
                  window.parent.sphereFacilities.select(slug);
                } else {
                  // The page's own script has not run yet (the map can finish
                  // loading first on a slow link): open the facility's URL,
                  // which shows the same panel, rather than ignore the click.
                  window.parent.location.href = detailUrl.replace("__slug__", slug);
                }
              });
              style(slug);
            },
            setStatuses: function (statuses) {
              Object.keys(statuses).forEach(function (slug) {
                const m = markers[slug];
                if (!m) { return; }
                m.status = statuses[slug].status;
                m.setTooltipContent(tip(m.facilityName, statuses[slug].label));
                style(slug);
              });
            },
            select: function (slug) {
              const previous = selected;
              selected = slug;
              if (markers[previous]) { style(previous); }
              if (markers[slug]) { style(slug); }
            },
          };
        })({{ this._parent.get_name() }});
        {% endmacro %}
        """
    )

    def __init__(self, selected: str | None) -> None:
        super().__init__()
        self._name = "MapApi"
        self.colours = STATE_COLOURS
        self.selected = selected
        self.detail_url = reverse("facilities:detail", args=["__slug__"])


class FacilityMarker(MacroElement):
    """Registers one folium marker with `window.sphereMap`."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        window.sphereMap.add({{ this.slug|tojson }}, {{ this.name|tojson }},
          {{ this.status|tojson }}, {{ this.label|tojson }}, {{ this.marker.get_name() }});
        {% endmacro %}
        """
    )

    def __init__(self, marker: folium.CircleMarker, facility: Facility, status: CurrentStatus):
        super().__init__()
        self._name = "FacilityMarker"
        self.marker = marker
        self.slug = facility.slug
        self.name = facility.name
        self.status = status.status
        self.label = status.label


class WorldOutline(MacroElement):
    """Country outlines in a pane beneath the tiles: hidden by tiles that load,
    visible where they do not (offline, blocked, or no tile URL at all)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        (function (map) {
          map.createPane("world");
          map.getPane("world").style.zIndex = 150;
          map.getPane("world").style.pointerEvents = "none";
          fetch({{ this.url|tojson }})
            .then(function (response) { return response.json(); })
            .then(function (data) {
              L.geoJSON(data, {pane: "world", interactive: false,
                style: {color: "#94a3b8", weight: 0.8, fillColor: "#f8fafc", fillOpacity: 1}}
              ).addTo(map);
              map.getContainer().setAttribute("data-world-outline", "loaded");
            });
        })({{ this._parent.get_name() }});
        {% endmacro %}
        """
    )

    def __init__(self, url: str) -> None:
        super().__init__()
        self._name = "WorldOutline"
        self.url = url


class InitialView(MacroElement):
    """Fit the facilities in view at once, without folium's animated
    fitBounds: markers that slide for a quarter second after the map loads
    can swallow the first click (the browser tests caught it)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        {{ this._parent.get_name() }}.fitBounds({{ this.bounds|tojson }},
          {padding: [40, 40], animate: false});
        {% endmacro %}
        """
    )

    def __init__(self, bounds: list[tuple[float, float]]) -> None:
        super().__init__()
        self._name = "InitialView"
        self.bounds = [list(corner) for corner in bounds]


def facility_map(
    facilities: list[Facility], statuses: dict[str, CurrentStatus], selected: str | None = None
) -> folium.Map:
    """The map: a world outline, the tile layer when configured, and one
    marker per facility coloured by its status."""
    fmap = folium.Map(
        location=DEFAULT_CENTER,
        zoom_start=4,
        tiles=None,
        min_zoom=2,
        max_zoom=18,
        control_scale=True,
        world_copy_jump=True,
    )
    fmap.default_js = vendored_assets(folium.Map.default_js, VENDORED_JS)
    fmap.default_css = vendored_assets(folium.Map.default_css, VENDORED_CSS)
    fmap.get_root().header.add_child(Element('<link rel="icon" href="data:,">'), name="no_favicon")
    MapApi(selected).add_to(fmap)
    WorldOutline(static(WORLD_GEOJSON)).add_to(fmap)
    if settings.MAP_TILE_URL:
        folium.TileLayer(
            tiles=settings.MAP_TILE_URL,
            attr=settings.MAP_TILE_ATTRIBUTION or " ",
            name="Map",
            max_zoom=18,
        ).add_to(fmap)
    for facility in facilities:
        status = statuses[facility.slug]
        marker = folium.CircleMarker(
            location=(facility.latitude, facility.longitude),
            radius=10,
            color="#ffffff",
            weight=2,
            fill=True,
            fill_color=STATE_COLOURS[status.status],
            fill_opacity=0.95,
        )
        marker.add_to(fmap)
        FacilityMarker(marker, facility, status).add_to(fmap)
    if len(facilities) > 1:
        lats = [f.latitude for f in facilities]
        lons = [f.longitude for f in facilities]
        InitialView([(min(lats), min(lons)), (max(lats), max(lons))]).add_to(fmap)
    elif facilities:
        fmap.location = (facilities[0].latitude, facilities[0].longitude)
    return fmap


def render_map(fmap: folium.Map) -> str:
    """The map as a complete HTML document."""
    return fmap.get_root().render()


def legend_entries() -> list[tuple[str, str, str]]:
    """(state, label, colour) for the legend, in the order of the map's colours."""
    return [(state, STATE_LABELS[state], colour) for state, colour in STATE_COLOURS.items()]
