# GPU call 1 (carry .devrun1): issue 10's predict ratio on the demo model, then issue 8's
# Sentinel-2 and SpaceNet grid, 3 seeds, one process per region and seed, 2 threads each.
set -u; T0=$(date +%s); mkdir -p /tmp/res
source scripts/device/setup.sh
mkdir -p /tmp/data && tar -xJf .devrun1/data1.tar.xz -C /tmp/data; nvidia-smi -L
bash scripts/device/pack.sh "$OUT" --loop & PACK=$!
python3 -m geotl train regions/demo-osbs.toml --out /tmp/res/gpu/model --device cuda --overwrite 2> /tmp/res/train.log
timeout 150 python3 scripts/bench_predict.py --device cuda --model /tmp/res/gpu/model --size 4096 --batch-size 32 \
  --repeats 3 --skip-torchgeo --skip-cli --mem-sizes --json /tmp/res/ratio.json 2> /tmp/res/ratio.log
grep '"scene_px": 4096' /tmp/res/ratio.log | head -1
# the same with 512 px vectoriser cores: 64 units of work for 16 workers instead of 16
# (BENCHMARKS.md, issue 10, stop 44: simulated 0.95 -> 0.77 s on the real maps)
timeout 100 python3 scripts/bench_predict.py --device cuda --model /tmp/res/gpu/model --size 4096 --batch-size 32 \
  --repeats 2 --skip-torchgeo --skip-cli --mem-sizes --vector-window 512 --json /tmp/res/ratio512.json 2> /tmp/res/ratio512.log
LEFT=$(( ${BUDGET:-400} - ($(date +%s)-T0) - 20 )); PIDS=()
for s in 0 1 2; do for r in spacenet s2; do
  OMP_NUM_THREADS=2 timeout $LEFT python3 scripts/bench_transfer.py --data /tmp/data --device cuda --regions $r \
    --spacenet-bases pkg:efficientnet-lite0,none --s2-bases pkg:efficientnet-lite0,none --budgets 10,1000 \
    --seeds $s --threads 2 --n-boot 1000 --work /tmp/res/tr-$r-s$s > /tmp/res/tr-$r-s$s.md 2> /tmp/res/tr-$r-s$s.log & PIDS+=($!)
done; done
wait "${PIDS[@]}"; kill $PACK; bash scripts/device/pack.sh "$OUT"
echo "done $(( $(date +%s)-T0 )) s, $(find /tmp/res -name result.json | wc -l) runs"
