#!/usr/bin/env bash
# Re-create static/vendor/ from registry packages (maintainers only; CI never runs this).
#
# The portal must work with no internet, so every browser asset is served from our own
# static files. This script fetches the pinned package versions below with `npm pack`
# (npm registry only, nothing else is contacted), or copies from the installed Python
# package folium, and lays the files out under static/vendor/.
# See static/vendor/VENDOR.md for the table of files, versions and licences, and for the
# folium default-name -> static-path mapping.
#
# Usage:  scripts/vendor_static.sh            # needs node + npm, and the project venv
#         PYTHON=/path/to/python scripts/vendor_static.sh
#
# To bump a version: change the pin below (check candidates with e.g.
# `npm view htmx.org@2 version`), re-run, review `git diff --stat static/vendor`, and update
# VENDOR.md. Folium's own pins live in folium/folium.py (_default_js/_default_css) and
# folium/plugins/*.py; keep the Leaflet family in step with the installed folium.
set -euo pipefail

# ---- pinned versions ----------------------------------------------------------------------
HTMX_VERSION=2.0.11                    # npm htmx.org, latest 2.x
# The smallest plotly.js bundle with every trace type dashboards/stats.py draws (scatter,
# bar, heatmap; "basic" has no heatmap). Same plotly.js as the Python plotly 7.1.0 embeds.
PLOTLY_VERSION=4.1.1                   # npm plotly.js-cartesian-dist-min
LEAFLET_VERSION=1.9.3                  # = folium 0.20 _default_js "leaflet"
JQUERY_VERSION=3.7.1                   # = folium 0.20 "jquery"
BOOTSTRAP_VERSION=5.2.2                # = folium 0.20 "bootstrap"/"bootstrap_css"
AWESOME_MARKERS_VERSION=2.0.5          # npm leaflet.awesome-markers (JS identical to 2.0.2)
FONTAWESOME_VERSION=6.2.0              # = folium 0.20 "awesome_markers_font_css"
GLYPHICONS_VERSION=1.0.7               # npm @neos21/bootstrap3-glyphicons (Bootstrap 3.3.7 glyphicons)
MARKERCLUSTER_VERSION=1.1.0            # = folium.plugins.MarkerCluster
WORLD_ATLAS_VERSION=2.0.2              # npm world-atlas (Natural Earth 4.1.0, TopoJSON)
TOPOJSON_CLIENT_VERSION=3.1.0          # npm topojson-client, used only to convert to GeoJSON

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/static/vendor"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"

for tool in npm node tar sha256sum "$PYTHON"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "missing: $tool" >&2; exit 1; }
done

TMP="$(mktemp -d "${TMPDIR:-/tmp}/vendor_static.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

# fetch NAME VERSION -> prints the unpacked package dir
fetch() {
    local name="$1" version="$2" tgz dir
    dir="$TMP/pkg/${name//\//_}"
    mkdir -p "$dir"
    tgz="$(cd "$TMP" && npm pack "$name@$version" --silent 2>/dev/null | tail -n 1)"
    tar -xzf "$TMP/$tgz" -C "$dir"
    echo "$dir/package"
}

# copy SRC DST, dropping `sourceMappingURL` comments (we don't ship .map files, so the
# comment would only point browsers / ManifestStaticFilesStorage at a missing file).
copy_nomap() {
    mkdir -p "$(dirname "$2")"
    sed -E -e '/^[[:space:]]*\/\/[#@] sourceMappingURL=.*$/d' \
           -e 's#/\*[#@] sourceMappingURL=[^*]*\*/##g' "$1" > "$2"
}

# copy_to DIR FILE... (plain copy)
copy_to() {
    local d="$1"; shift
    mkdir -p "$d"
    cp "$@" "$d/"
}

pkg_dir() {  # directory of an installed Python package
    "$PYTHON" - "$1" <<'EOF'
import importlib.util, os, sys
spec = importlib.util.find_spec(sys.argv[1])
print(os.path.dirname(spec.origin))
EOF
}

echo "vendoring into $DEST"
mkdir -p "$DEST"
# Start from a clean tree, but keep the hand-written VENDOR.md.
find "$DEST" -mindepth 1 -maxdepth 1 ! -name VENDOR.md -exec rm -rf {} +

# ---- 1. htmx --------------------------------------------------------------------------------
p="$(fetch htmx.org "$HTMX_VERSION")"
copy_nomap "$p/dist/htmx.min.js" "$DEST/htmx/htmx.min.js"
copy_to "$DEST/htmx" "$p/LICENSE"

# ---- 2. plotly.js, the cartesian bundle (bar, box, contour, heatmap, histogram*, image, pie,
# scatter, scatterternary, violin): 1.5 MB against the full bundle's 4.8 MB. A chart with
# another trace type draws nothing: switch to a bigger bundle here first.
p="$(fetch plotly.js-cartesian-dist-min "$PLOTLY_VERSION")"
copy_nomap "$p/plotly-cartesian.min.js" "$DEST/plotly/plotly-cartesian.min.js"
copy_to "$DEST/plotly" "$p/LICENSE"
echo "$(head -c 200 "$DEST/plotly/plotly-cartesian.min.js" | grep -o 'plotly.js (cartesian - minified) v[0-9.]*')"

# ---- 3. folium 0.20 defaults ----------------------------------------------------------------
# leaflet: js + css + images/ (leaflet.css refers to images/*.png; L.Icon.Default finds
# marker-icon.png through that css, so images/ must sit next to leaflet.css)
p="$(fetch leaflet "$LEAFLET_VERSION")"
copy_nomap "$p/dist/leaflet.js" "$DEST/leaflet/leaflet.js"
copy_nomap "$p/dist/leaflet.css" "$DEST/leaflet/leaflet.css"
copy_to "$DEST/leaflet/images" "$p"/dist/images/*.png
copy_to "$DEST/leaflet" "$p/LICENSE"

# jquery
p="$(fetch jquery "$JQUERY_VERSION")"
copy_nomap "$p/dist/jquery.min.js" "$DEST/jquery/jquery.min.js"
copy_to "$DEST/jquery" "$p/LICENSE.txt"

# bootstrap 5 (js bundle includes Popper)
p="$(fetch bootstrap "$BOOTSTRAP_VERSION")"
copy_nomap "$p/dist/js/bootstrap.bundle.min.js" "$DEST/bootstrap/js/bootstrap.bundle.min.js"
copy_nomap "$p/dist/css/bootstrap.min.css" "$DEST/bootstrap/css/bootstrap.min.css"
copy_to "$DEST/bootstrap" "$p/LICENSE"

# Bootstrap 3 glyphicons (folium "glyphicons_css"; folium.Icon's default prefix is
# "glyphicon"). Glyphicons-only css + fonts/, css refers to ../fonts/.
p="$(fetch @neos21/bootstrap3-glyphicons "$GLYPHICONS_VERSION")"
copy_nomap "$p/dist/css/bootstrap3-glyphicons.min.css" \
    "$DEST/bootstrap3-glyphicons/css/bootstrap3-glyphicons.min.css"
copy_to "$DEST/bootstrap3-glyphicons/fonts" "$p"/dist/fonts/glyphicons-halflings-regular.*
copy_to "$DEST/bootstrap3-glyphicons" "$p/LICENSE"

# Leaflet.awesome-markers: js + css + images/ (css refers to images/*.png)
p="$(fetch leaflet.awesome-markers "$AWESOME_MARKERS_VERSION")"
# NB: use the plain .js (3.8 kB, same as the 2.0.2 file folium loads). The package's
# .min.js is a stale 2.0.1 build without `extraClasses`, which folium.Icon(angle=...) needs.
copy_nomap "$p/dist/leaflet.awesome-markers.js" "$DEST/awesome-markers/leaflet.awesome-markers.js"
copy_nomap "$p/dist/leaflet.awesome-markers.css" "$DEST/awesome-markers/leaflet.awesome-markers.css"
copy_to "$DEST/awesome-markers/images" "$p"/dist/images/*.png
copy_to "$DEST/awesome-markers" "$p/LICENSE"

# Font Awesome Free: css/all.min.css + webfonts/ (css refers to ../webfonts/)
p="$(fetch @fortawesome/fontawesome-free "$FONTAWESOME_VERSION")"
copy_nomap "$p/css/all.min.css" "$DEST/fontawesome/css/all.min.css"
copy_to "$DEST/fontawesome/webfonts" "$p"/webfonts/*.woff2 "$p"/webfonts/*.ttf
copy_to "$DEST/fontawesome" "$p/LICENSE.txt"

# folium "awesome_rotate_css": folium points at a css file kept in its GitHub repo (not in
# the wheel, not on npm). It only defines .fa-rotate-N { transform: rotate(Ndeg) } for the
# `angle` option of folium.Icon (extra_classes="fa-rotate-{angle}"), so we generate an
# equivalent file here.
mkdir -p "$DEST/awesome-rotate"
{
    echo "/* Equivalent of folium's leaflet.awesome.rotate.css, generated by scripts/vendor_static.sh."
    echo "   folium.Icon(angle=N) adds the class fa-rotate-N to the marker icon. */"
    for deg in $(seq 0 360); do
        printf '.fa-rotate-%d{-webkit-transform:rotate(%ddeg);transform:rotate(%ddeg)}\n' "$deg" "$deg" "$deg"
    done
} > "$DEST/awesome-rotate/leaflet.awesome.rotate.min.css"

# ---- 3b. folium plugins we are likely to use ------------------------------------------------
# folium.plugins.MarkerCluster
p="$(fetch leaflet.markercluster "$MARKERCLUSTER_VERSION")"
copy_nomap "$p/dist/leaflet.markercluster.js" "$DEST/leaflet-markercluster/leaflet.markercluster.js"
copy_nomap "$p/dist/MarkerCluster.css" "$DEST/leaflet-markercluster/MarkerCluster.css"
copy_nomap "$p/dist/MarkerCluster.Default.css" "$DEST/leaflet-markercluster/MarkerCluster.Default.css"
copy_to "$DEST/leaflet-markercluster" "$p/MIT-LICENCE.txt"

# folium.plugins.HeatMap: folium's wheel ships the (patched) Leaflet.heat build it points at.
folium_dir="$(pkg_dir folium)"
copy_to "$DEST/leaflet-heat" "$folium_dir/templates/leaflet_heat.min.js"

# ---- 4. world outline GeoJSON ---------------------------------------------------------------
p="$(fetch world-atlas "$WORLD_ATLAS_VERSION")"
mkdir -p "$DEST/world" "$TMP/node"
npm install --prefix "$TMP/node" "topojson-client@$TOPOJSON_CLIENT_VERSION" \
    --no-save --no-audit --no-fund --silent 2>/dev/null
# topojson -> GeoJSON FeatureCollection of the 177 Natural Earth 1:110m countries
# (feature id = ISO 3166-1 numeric, properties.name). Coordinates are rounded to 4 decimals,
# finer than the TopoJSON quantisation step (0.0036 deg), so nothing is lost.
NODE_PATH="$TMP/node/node_modules" node - "$p/countries-110m.json" "$DEST/world/world.geojson" <<'EOF'
const fs = require('fs');
const topojson = require('topojson-client');
const [src, dst] = process.argv.slice(2);
const topo = JSON.parse(fs.readFileSync(src, 'utf8'));
const fc = topojson.feature(topo, topo.objects.countries);
const round = (c) => (Array.isArray(c[0]) ? c.map(round) : c.map((v) => Math.round(v * 1e4) / 1e4));
for (const f of fc.features) if (f.geometry) f.geometry.coordinates = round(f.geometry.coordinates);
fs.writeFileSync(dst, JSON.stringify(fc) + '\n');
EOF
copy_to "$DEST/world" "$p/LICENSE"
"$PYTHON" - "$DEST/world/world.geojson" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["type"] == "FeatureCollection" and d["features"], "not a FeatureCollection"
assert all(f["type"] == "Feature" and f["geometry"]["type"] in {"Polygon", "MultiPolygon"} for f in d["features"])
print(f"world.geojson: FeatureCollection with {len(d['features'])} features")
EOF

# ---- checks: every relative url() in the vendored css resolves ------------------------------
"$PYTHON" - "$DEST" <<'EOF'
import pathlib, re, sys
root = pathlib.Path(sys.argv[1])
bad = []
for css in root.rglob("*.css"):
    for ref in re.findall(r"url\(\s*['\"]?([^'\")]+)['\"]?\s*\)", css.read_text()):
        if ref.startswith(("data:", "#", "http:", "https:", "//")):
            continue
        target = (css.parent / ref.split("?")[0].split("#")[0]).resolve()
        if not target.is_file():
            bad.append(f"{css.relative_to(root)} -> {ref}")
if bad:
    sys.exit("unresolved url() references:\n  " + "\n  ".join(bad))
print("all css url() references resolve")
EOF

# ---- checksums (review with `git diff static/vendor/SHA256SUMS`) ----------------------------
(cd "$DEST" && find . -type f ! -name SHA256SUMS ! -name VENDOR.md | LC_ALL=C sort | xargs sha256sum) > "$DEST/SHA256SUMS"

du -sh "$DEST"
echo "done; now review static/vendor/VENDOR.md against the pins above."
