# GPU call 2 (carry .devrun2, on the machine call 1 left warm): issue 9's detector on NEON
# SJER (0.1 m, ImageNet / none / HARV+OSBS source) and issue 8's NEON grid, 3 seeds.
set -u; T0=$(date +%s); mkdir -p /tmp/res
[ -f /tmp/site/.done ] || { echo "cold machine: call 1 first"; exit 4; }
source scripts/device/setup.sh
mkdir -p /tmp/data && tar -xJf .devrun2/data2.tar.xz -C /tmp/data
bash scripts/device/pack.sh "$OUT" --loop & PACK=$!
LEFT=$(( ${BUDGET:-300} - 15 )); PIDS=()
for b in pkg:efficientnet-lite0 none model:source; do n=${b//[:.]/_}
  OMP_NUM_THREADS=1 timeout $LEFT python3 scripts/bench_detection.py --data /tmp/data --work /tmp/res/det-$n --device cuda \
    --res-m 0.1 --chip-px 400 --batch-size 8 --steps ${DSTEPS:-600} --val-every 50 --threads 1 \
    --runs "$b@all,$b@100,$b@30" > /tmp/res/det-$n.md 2> /tmp/res/det-$n.log & PIDS+=($!)
done
for s in 0 1 2; do for b in pkg:efficientnet-lite0 model:source none; do n=${b//[:.]/_}
  OMP_NUM_THREADS=1 timeout $LEFT python3 scripts/bench_transfer.py --data /tmp/data --device cuda --regions neon \
    --neon-bases $b --budgets 1000,30 --seeds $s --threads 1 --n-boot 1000 --work /tmp/res/tr-neon-$n-s$s \
    > /tmp/res/tr-neon-$n-s$s.md 2> /tmp/res/tr-neon-$n-s$s.log & PIDS+=($!)
done; done
wait "${PIDS[@]}"; kill $PACK; bash scripts/device/pack.sh "$OUT"
echo "done $(( $(date +%s)-T0 )) s"; grep -h "^|" /tmp/res/det-*.md | head
