#!/usr/bin/env bash
# Re-create static/vendor/ from registry packages (maintainers only; CI never runs this).
#
# The portal must work with no internet, so every browser asset is served from our own
# static files. This script fetches the pinned package versions below with `npm pack`
# (npm registry only, nothing else is contacted) and lays the files out under static/vendor/.
# See static/vendor/VENDOR.md for the table of files, versions and licences, and for the
# folium default-name -> static-path mapping.
#
# Usage:  scripts/vendor_static.sh            # needs node + npm, and the project venv
#         PYTHON=/path/to/python scripts/vendor_static.sh
#
# To bump a version: change the pin below (check candidates with e.g.
# `npm view htmx.org@2 version`), re-run, review `git diff --stat static/vendor`, and update
# VENDOR.md. Folium's own pins live in folium/folium.py (_default_js/_default_css); keep
# Leaflet in step with the installed folium. Of folium's defaults the facilities map loads
# only Leaflet (facilities/maps.py VENDORED_JS/VENDORED_CSS), so nothing else is vendored.
set -euo pipefail

# ---- pinned versions ----------------------------------------------------------------------
HTMX_VERSION=2.0.11                    # npm htmx.org, latest 2.x
# The smallest plotly.js bundle with every trace type dashboards/stats.py draws (scatter,
# bar, heatmap; "basic" has no heatmap). Same plotly.js as the Python plotly 7.1.0 embeds.
PLOTLY_VERSION=4.1.1                   # npm plotly.js-cartesian-dist-min
LEAFLET_VERSION=1.9.3                  # = folium 0.20 _default_js "leaflet"
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

# ---- 3. Leaflet, the only folium 0.20 default the facilities map loads ----------------------
# leaflet: js + css + images/ (leaflet.css refers to images/*.png; L.Icon.Default finds
# marker-icon.png through that css, so images/ must sit next to leaflet.css)
p="$(fetch leaflet "$LEAFLET_VERSION")"
copy_nomap "$p/dist/leaflet.js" "$DEST/leaflet/leaflet.js"
copy_nomap "$p/dist/leaflet.css" "$DEST/leaflet/leaflet.css"
copy_to "$DEST/leaflet/images" "$p"/dist/images/*.png
copy_to "$DEST/leaflet" "$p/LICENSE"

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
