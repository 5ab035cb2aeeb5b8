#!/usr/bin/env bash
# CUDA smoke check and GPU benchmark: train the demo region on the GPU (mixed precision),
# predict its scene on the GPU, then time predict against the bare model and measure peak
# memory on generated 5k and 20k px scenes.
#
#   scripts/check_cuda.sh OUT_DIR [CHIPS_DIR]
#
# PYTHON selects the interpreter (default python3); CHIPS_DIR reuses chips made elsewhere.
set -uo pipefail
PY=${PYTHON:-python3}
OUT=${1:?usage: check_cuda.sh OUT_DIR [CHIPS_DIR]}
CHIPS=${2:-}
mkdir -p "$OUT"
"$PY" -c "import torch; print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name())"
chips_opt=()
if [ -n "$CHIPS" ]; then chips_opt=(--chips "$CHIPS"); fi
/usr/bin/time -v "$PY" -m geotl train regions/demo-osbs.toml --out "$OUT/model" "${chips_opt[@]}" \
    --device cuda --overwrite 2> "$OUT/train.log"
echo "train rc=$?"; tail -n 5 "$OUT/train.log" | grep -v "^\s*$" || true
"$PY" -c "import json,sys; c=json.load(open(sys.argv[1])); print(json.dumps({k: c['metrics'].get(k) for k in ('val_iou','best_epoch','epochs_run','train_seconds','throughput')}))" "$OUT/model/model.json"
"$PY" -m geotl predict "$OUT/model" regions/demo-osbs/imagery/OSBS_029.tif -o "$OUT/demo.geojson" \
    --device cuda --quicklook "$OUT/demo.png" --overwrite 2> "$OUT/predict.log"
echo "predict rc=$?"; "$PY" -c "import json,sys; print(len(json.load(open(sys.argv[1]))['features']), 'features')" "$OUT/demo.geojson"
timeout "${BENCH_TIMEOUT:-360}" "$PY" scripts/bench_predict.py --device cuda --model "$OUT/model" \
    --size 4096 --batch-size 32 --repeats 2 --skip-torchgeo --mem-sizes 5000 20000 \
    --json "$OUT/bench_predict.json" 2> "$OUT/bench_predict.log"
echo "bench_predict rc=$?"; cat "$OUT/bench_predict.log" | grep "^{" || true
