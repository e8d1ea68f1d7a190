"""The folium map of facilities, with every asset served from /static/.

folium's defaults load Leaflet, jQuery, Bootstrap, Font Awesome and
Leaflet.awesome-markers from CDNs; `vendored_assets` swaps Leaflet for its
vendored copy (static/vendor/VENDOR.md maps the names), leaves out the others
(the markers are this app's own, map.js, and use none of them: about 700 kB
less for every map load), and fails loudly if a folium upgrade adds an asset
nobody has looked at. The only remote URL left is
the tile server (settings.MAP_TILE_URL); when it cannot be reached, a bundled
world outline drawn beneath the tiles still gives the markers geography.

The map is a document of its own (folium's page styles `html, body`), shown
in an iframe by the facilities page. The page and the map talk through two
small objects: `window.sphereMap` here and `window.sphereFacilities` there.
"""

import re
from collections.abc import Iterable

import folium
from branca.element import Element, MacroElement
from django.conf import settings
from django.templatetags.static import static
from django.urls import reverse
from folium.template import Template

from facilities.models import Facility
from facilities.status import CurrentStatus
from sphere_stats import security

# folium name -> path under STATIC_URL (static/vendor/VENDOR.md), or None
# for a default asset the map does not use and does not load.
VENDORED_JS = {
    "leaflet": "vendor/leaflet/leaflet.js",
    "jquery": None,
    "bootstrap": None,
    "awesome_markers": None,
}
VENDORED_CSS = {
    "leaflet_css": "vendor/leaflet/leaflet.css",
    "bootstrap_css": None,
    "glyphicons_css": None,
    "awesome_markers_font_css": None,
    "awesome_markers_css": None,
    "awesome_rotate_css": None,
}
WORLD_GEOJSON = "vendor/world/world.geojson"
FOLIUM_VIEWPORT = re.compile(r'<meta name="viewport"[^>]*>')
# folium's inline scripts (the map and its markers are built by script in the
# page): bare `<script>` tags, which get the request's CSP nonce. Data in
# them went through `tojson`, which escapes "<", so none can be user text.
INLINE_SCRIPT = re.compile(r"<script>")
# The map's own script and styles: labelled, focusable markers (map.js).
MAP_JS = "facilities/map.js"
MAP_CSS = "facilities/map.css"
MAP_LABEL = "Map of facilities and their status"
# Continental US, where the demo facilities are, when there are none to fit.
DEFAULT_CENTER = (39.5, -98.35)


def vendored_assets(defaults: Iterable[tuple[str, str]], vendored: dict[str, str | None]) -> list:
    """folium's (name, CDN URL) list with each URL replaced by its static one,
    and the unused ones left out; the names stay, because folium removes
    duplicate assets by name."""
    missing = [name for name, _ in defaults if name not in vendored]
    if missing:
        raise LookupError(
            f"folium asset(s) {missing} are not vendored; see static/vendor/VENDOR.md"
        )
    return [(name, static(vendored[name])) for name, _ in defaults if vendored[name]]


class MapApi(MacroElement):
    """`window.sphereMap` (facilities/static/facilities/map.js): the markers
    by slug, their status labels and the selection."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        window.sphereMap = window.sphereMapSetup({{ this._parent.get_name() }},
          {{ this.options|tojson }});
        {% endmacro %}
        """
    )

    def __init__(self, selected: str | None) -> None:
        super().__init__()
        self._name = "MapApi"
        self.options = {
            "selected": selected,
            "detailUrl": reverse("facilities:detail", args=["__slug__"]),
            "label": MAP_LABEL,
        }


class FacilityMarker(MacroElement):
    """One facility's marker, made by `window.sphereMap.add`: a focusable
    button labelled with the facility's name and status."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        window.sphereMap.add({{ this.slug|tojson }}, {{ this.name|tojson }},
          {{ this.status|tojson }}, {{ this.label|tojson }}, {{ this.location|tojson }});
        {% endmacro %}
        """
    )

    def __init__(self, facility: Facility, status: CurrentStatus):
        super().__init__()
        self._name = "FacilityMarker"
        self.slug = facility.slug
        self.name = facility.name
        self.status = status.status
        self.label = status.label
        self.location = [facility.latitude, facility.longitude]


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
    """Fit the facilities and their labels in view at once, without folium's
    animated fitBounds: markers that slide for a quarter second after the
    map loads can swallow the first click (the browser tests caught it)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        (function (map) {
          // Labels run right of their marker: room for them on that side.
          const right = Math.min(180, map.getSize().x / 5);
          map.fitBounds({{ this.bounds|tojson }},
            {paddingTopLeft: [30, 30], paddingBottomRight: [right, 30], animate: false});
        })({{ this._parent.get_name() }});
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
    """The map: the world outline, tiles over it when MAP_TILE_URL is set (no
    tile request at all otherwise), and one labelled marker per facility."""
    fmap = folium.Map(
        location=DEFAULT_CENTER,
        zoom_start=4,
        tiles=None,
        min_zoom=2,
        max_zoom=18,
        control_scale=True,
        world_copy_jump=True,
        # Quarter zoom steps let a phone's narrow map fit the facilities
        # closer than whole steps would.
        zoom_snap=0.25,
    )
    fmap.default_js = [
        *vendored_assets(folium.Map.default_js, VENDORED_JS),
        ("sphere_map", static(MAP_JS)),
    ]
    fmap.default_css = [
        *vendored_assets(folium.Map.default_css, VENDORED_CSS),
        ("sphere_map_css", static(MAP_CSS)),
    ]
    root = fmap.get_root()
    # folium's page has no title (nor a language: render_map adds it); screen
    # readers and axe want both.
    root.title = MAP_LABEL
    root.header.add_child(Element('<link rel="icon" href="data:,">'), name="no_favicon")
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
        FacilityMarker(facility, statuses[facility.slug]).add_to(fmap)
    if len(facilities) > 1:
        lats = [f.latitude for f in facilities]
        lons = [f.longitude for f in facilities]
        InitialView([(min(lats), min(lons)), (max(lats), max(lons))]).add_to(fmap)
    elif facilities:
        fmap.location = (facilities[0].latitude, facilities[0].longitude)
    return fmap


def render_map(fmap: folium.Map, nonce: str | None = None) -> str:
    """The map as a complete HTML document, in English, that a reader may
    zoom (folium's viewport forbids it, which fails WCAG 1.4.4), whose
    inline scripts carry the CSP nonce (by default the current request's:
    sphere_stats.middleware.ContentSecurityPolicyMiddleware)."""
    if nonce is None:
        nonce = security.current_nonce()
    html = fmap.get_root().render().replace("<html>", '<html lang="en">', 1)
    html = INLINE_SCRIPT.sub(f'<script nonce="{nonce}">', html)
    return FOLIUM_VIEWPORT.sub(
        '<meta name="viewport" content="width=device-width, initial-scale=1">', html, count=1
    )
