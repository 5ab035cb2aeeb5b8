# Issue 10's GPU check, in two calls on one machine kept warm (carry .devrun1, made by
# `ONLY_SITE=1 bash scripts/device/prepare.sh`; results come back as $OUT/results.tgz):
#   a: install, train the demo model on the GPU, predict_scene against the bare forward
#      passes on a 4096 px scene of real NEON texture (warm-ups untimed on both sides), and
#      the whole `geotl predict` command on it (scenes per hour on one GPU);
#   b: the same scene with 512 px vectoriser cores, then the CPU figures on this quiet
#      16-core machine: the pipeline without the model at 1 and 2 cores, and the trained
#      model's ratio to its bare forward passes on 2 cores.
#   d: one call, nothing trained there: the models trained here (.devrun1/models/osbs, the
#      demo region's per-pixel model, and .devrun1/models/unet, its U-Net) predict the 4096 px
#      scene with this tree and with .devrun1/before (`git archive COMMIT geotl`), turn about
#      in one process each, against the same bare forward passes.
set -u; T0=$(date +%s); mkdir -p /tmp/res
source scripts/device/setup.sh
B="python3 scripts/bench_predict.py --model /tmp/res/gpu/model"
case "${1:-a}" in
a)
  nvidia-smi -L; uptime
  python3 -m geotl train regions/demo-osbs.toml --out /tmp/res/gpu/model --device cuda --overwrite \
    2> /tmp/res/train.log || { tail -20 /tmp/res/train.log; exit 1; }
  tail -2 /tmp/res/train.log
  timeout 200 $B --device cuda --size 4096 --batch-size 32 --repeats 3 --skip-torchgeo --mem-sizes \
    --json /tmp/res/ratio.json > /tmp/res/ratio.out 2> /tmp/res/ratio.log
  echo "ratio rc $?"; tail -c 2500 /tmp/res/ratio.out; tail -5 /tmp/res/ratio.log ;;
b)
  [ -d /tmp/res/gpu/model ] || { echo "cold machine: call a first"; exit 4; }
  uptime
  timeout 120 $B --device cuda --size 4096 --batch-size 32 --repeats 2 --skip-torchgeo --skip-cli \
    --mem-sizes --vector-window 512 --json /tmp/res/ratio512.json > /tmp/res/ratio512.out 2> /tmp/res/ratio512.log
  echo "512 rc $?"; grep -A3 '"ratio' /tmp/res/ratio512.out | head -20
  OMP_NUM_THREADS=1 timeout 150 $B --size 2048 --repeats 2 --pipeline --noop-forward model \
    --json /tmp/res/pipeline.json > /tmp/res/pipeline.out 2> /tmp/res/pipeline.log
  echo "pipeline rc $?"; tail -c 1500 /tmp/res/pipeline.out
  OMP_NUM_THREADS=2 timeout 150 taskset -c 0,1 $B --size 2048 --repeats 2 --skip-torchgeo --skip-cli \
    --mem-sizes --threads 2 --json /tmp/res/cpu2.json > /tmp/res/cpu2.out 2> /tmp/res/cpu2.log
  echo "cpu2 rc $?"; tail -c 1500 /tmp/res/cpu2.out ;;
d)
  nvidia-smi -L; uptime; nproc
  bash scripts/device/pack.sh "$OUT" --loop & PACK=$!
  # model : vectoriser core px (0: default) : repeats [: read threads (0: default)]
  for run in ${RUNS:-osbs:0:3 unet:0:2 osbs:512:2}; do
    IFS=: read -r m vw reps rt <<< "$run"; rt=${rt:-0}
    [ -d .devrun1/models/$m ] || { echo "no .devrun1/models/$m"; exit 4; }
    timeout 200 python3 scripts/bench_predict.py --model .devrun1/models/$m --device cuda --size 4096 \
      --batch-size 32 --repeats $reps --vector-window $vw --read-threads $rt --skip-torchgeo --skip-cli \
      --mem-sizes --before .devrun1/before --json /tmp/res/d-$m-$vw-$rt.json \
      > /tmp/res/d-$m-$vw-$rt.out 2> /tmp/res/d-$m-$vw-$rt.log
    echo "$m $vw $rt rc $? at $(( $(date +%s)-T0 )) s"; grep '"scene_px"' /tmp/res/d-$m-$vw-$rt.log | cut -c1-1800
  done; uptime; kill $PACK ;;
esac
bash scripts/device/pack.sh "$OUT"; echo "done $(( $(date +%s)-T0 )) s"
# c (optional, same machine): the main thread's profile of a warm predict_scene, and one
#    `geotl predict` command over 8 scenes (scenes per hour on one GPU, start-up paid once)
if [ "${1:-}" = c ]; then
  [ -d /tmp/res/gpu/model ] || python3 -m geotl train regions/demo-osbs.toml --out /tmp/res/gpu/model \
    --device cuda --overwrite 2> /tmp/res/train.log
  timeout 100 python3 scripts/device/profile_predict.py /tmp/res/gpu/model /tmp/res/prof > /tmp/res/profile.txt 2>&1
  echo "profile rc $?"; head -60 /tmp/res/profile.txt | cut -c1-160
  for i in 1 2 3 4 5 6 7 8; do ln -sf /tmp/res/prof/scene.tif /tmp/res/prof/s$i.tif; done
  /usr/bin/time -f "8 scenes: %e s wall, %M kB peak" python3 -m geotl -q predict /tmp/res/gpu/model \
    /tmp/res/prof/s?.tif -o /tmp/res/prof/out.geojson --device cuda 2>&1 | grep -v WARNING | tail -3
  # the demo region's network alone (the default artefact may be the per-pixel model)
  python3 -m geotl train regions/demo-osbs.toml --out /tmp/res/gpu/unet --device cuda --overwrite \
    --no-pixel-model 2> /tmp/res/train-unet.log; tail -1 /tmp/res/train-unet.log
  timeout 120 python3 scripts/bench_predict.py --model /tmp/res/gpu/unet --device cuda --size 4096 \
    --batch-size 32 --repeats 3 --skip-torchgeo --skip-cli --mem-sizes --json /tmp/res/ratio-unet.json \
    > /tmp/res/ratio-unet.out 2> /tmp/res/ratio-unet.log
  echo "unet rc $?"; grep -E '"(bare_forward_s|geotl_library_s|ratio_library|ratio_library_median|read_s|model_s|write_s|vectorise_s|wall_s)"' /tmp/res/ratio-unet.out
  bash scripts/device/pack.sh "$OUT"
fi
