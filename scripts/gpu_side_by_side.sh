#!/usr/bin/env bash
# One prepared run on a machine with a real GPU, built and tested elsewhere first: the adapter's
# tune, the golden cases, vlbridge's bench (every row, and every GEMM / attention variant
# forced), then PyTorch's upstream modules at the same sizes on the same card, joined into a
# ratio table. Each step has its own time limit so the whole run stays under about 8 minutes;
# a step that fails or runs out is reported and the next one still runs.
#
# Usage: scripts/gpu_side_by_side.sh VLBRIDGE_BIN OUTDIR [PEERS_DIR]
#   (environment: BENCH_ARGS, extra arguments of the main bench; VARIANTS_FILTER, the rows
#   timed under every variant)
#   PEERS_DIR holds torch_connectors.py and join.py (the team's peer scripts); without it, or
#   without torch on the machine, only vlbridge's side runs.
# Writes OUTDIR/{adapter.txt, tune.json, check.txt, vlbridge.json, vlbridge.md, towers.json,
# towers.md, vlbridge_all.json (both), variants.json,
# variants.md, roofline.svg, torch.json, torch.md, side_by_side.md, gpu.csv, log.txt}.
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: $0 VLBRIDGE_BIN OUTDIR [PEERS_DIR]"; exit 2; }
bin=$(realpath "$1"); out=$2; peers=${3:-}
mkdir -p "$out"
out=$(realpath "$out")
cd "$(dirname "$0")/.."
exec > >(tee -a "$out/log.txt") 2>&1

step() {  # step SECONDS NAME COMMAND...: runs COMMAND under a limit, says how it ended
    local limit=$1 name=$2 started=$SECONDS
    shift 2
    echo "== $name (limit ${limit} s)"
    timeout --kill-after=5 "$limit" "$@"
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - started)) s"
}

command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv >"$out/gpu.csv" 2>&1
step 20 info "$bin" info >"$out/adapter.txt"
# The tune written here is what the bench's devices then follow.
export VLBRIDGE_TUNE_DIR="$out/tune"
step 30 tune "$bin" tune
cp "$out"/tune/*.json "$out/tune.json" 2>/dev/null
step 30 check "$bin" check --manifest tests/data/manifest.json >"$out/check.txt"
tail -n 3 "$out/check.txt"
# BENCH_ARGS (say `--quick --filter ^gelu`) narrows the main bench for a rehearsal on lavapipe.
# shellcheck disable=SC2086
step 170 bench "$bin" bench --backend vulkan --skip '^tower/' --json "$out/vlbridge.json" --md "$out/vlbridge.md" \
    --plot "$out/roofline.svg" ${BENCH_ARGS:-}
# The real-size vision paths build gigabytes of random weights first: their own step, so a slow
# host cannot cost the main bench its results.
step 150 towers "$bin" bench --backend vulkan --quick --filter '^tower/' --json "$out/towers.json" --md "$out/towers.md"
python3 - "$out/vlbridge.json" "$out/towers.json" "$out/vlbridge_all.json" <<'PY' || cp "$out/vlbridge.json" "$out/vlbridge_all.json"
import json, sys
main, towers = (json.load(open(p)) for p in sys.argv[1:3])
rows = {a.get("adapter"): a.get("rows", []) for a in towers.get("adapters", [])}
for a in main.get("adapters", []):
    a["rows"] = a.get("rows", []) + rows.get(a.get("adapter"), [])
json.dump(main, open(sys.argv[3], "w"), indent=1)
PY
# The cooperative-matrix GEMM is opt-in (wgpu marks the feature experimental): in for this step.
step 60 variants env VLBRIDGE_COOPERATIVE_MATRIX=1 "$bin" bench --backend vulkan --filter "${VARIANTS_FILTER:-^(linear|attention_flash)/}" --variants --quick \
    --json "$out/variants.json" --md "$out/variants.md"
if [ -n "$peers" ] && python3 -c 'import torch, transformers' 2>/dev/null; then
    step 150 torch env PYTHONUNBUFFERED=1 python3 "$peers/torch_connectors.py" --device cuda --dtype all \
        --json "$out/torch.json" --md "$out/torch.md"
    step 10 join python3 "$peers/join.py" "$out/vlbridge_all.json" "$out/torch.json" --md "$out/side_by_side.md"
else
    echo "== torch: skipped (no PEERS_DIR given, or no torch and transformers here)"
fi
echo "total ${SECONDS} s"
