#!/usr/bin/env bash
# One prepared GPU check for issue 4 (fused mixed-op kernels), for a session that is lent a CUDA machine (H200).
# Runs the CUDA tests with the Triton kernels compiled (not interpreted), measures device-to-device copy bandwidth,
# times the kernels alone and the full search step on cuda, and prints one summary table.
#
# Targets (issue 4):
#   - fused Triton kernels at >= 80% of the measured device-to-device copy bandwidth
#   - first-order search step at batch 64 <= 60 ms   (a 50-epoch CIFAR-10 search in <= 20 minutes)
#   - second-order search step at batch 64: peak memory <= 4 GB (4096 MB)
#
# Usage: bash benchmarks/gpu_check.sh            (about 5 minutes; PY=python to use another interpreter)
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
export TRITON_INTERPRET=0
OUT=${OUT:-$(mktemp -d)}
status=0

echo "== CUDA tests (compiled Triton kernels)"
$PY -m pytest -q -p no:cacheprovider -m cuda tests/kernels || status=1

echo "== kernels alone"
$PY benchmarks/bench_mixed_op.py --device cuda --reps 20 --json > "$OUT/mixed_op.jsonl" || status=1

echo "== search step, batch 64"
$PY benchmarks/bench_search_step.py --device cuda --order first,second --batch 64 \
    --kernels reference,fused_cpu,triton --warmup 3 --steps 10 --json > "$OUT/step.jsonl" || status=1

$PY - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
rows = lambda f: [json.loads(l) for l in open(f"{out}/{f}") if l.strip()]
ops, steps = rows("mixed_op.jsonl"), rows("step.jsonl")
print("\n== summary (targets: kernels >= 80% of copy, first order b64 <= 60 ms, second order b64 <= 4096 MB)")
print(f"{'what':<44}{'value':>14}{'target':>12}{'ok':>5}")
copy = ops[0]["copy_gbps"] if ops else float("nan")
print(f"{'device-to-device copy GB/s':<44}{copy:>14.1f}{'':>12}{'':>5}")
for r in ops:
    if r["impl"] != "triton" or r["shape"][0] < 64:
        continue
    s = ",".join(map(str, r["shape"]))
    for d in ("fwd", "bwd"):
        pct = 100 * r[f"{d}_gbps"] / copy
        print(f"{'triton ' + d + ' ' + s + ' % of copy':<44}{pct:>13.0f}%{'>= 80%':>12}{'yes' if pct >= 80 else 'NO':>5}")
ref = {(r["order"]): r for r in steps if r.get("impl") == "reference"}
for r in steps:
    if "error" in r:
        print(f"{r['order'] + ' ' + r['kernels']:<44}{'failed':>14}  {r['error'][:60]}")
        continue
    ms, mb = 1e3 * r["median_s_per_step"], r["peak_mem_mb"]
    base = ref.get(r["order"])
    sp = f" ({base['median_s_per_step'] / r['median_s_per_step']:.1f}x ref)" if base else ""
    name = f"{r['order']} b{r['batch']} {r['kernels']}"
    if r["order"] == "first":
        print(f"{name + ' ms/step' + sp:<44}{ms:>14.1f}{'<= 60':>12}{'yes' if ms <= 60 else 'NO':>5}")
        print(f"{name + ' peak MB':<44}{mb:>14.0f}{'':>12}{'':>5}")
    else:
        print(f"{name + ' ms/step' + sp:<44}{ms:>14.1f}{'':>12}{'':>5}")
        print(f"{name + ' peak MB':<44}{mb:>14.0f}{'<= 4096':>12}{'yes' if mb <= 4096 else 'NO':>5}")
PYEOF
exit $status
