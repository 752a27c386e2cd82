"""benchmarks/bench_search_step.py: the JSON rows the issue asks for, and how rounds are merged."""
import importlib.util
import json
import os
import statistics
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench_search_step.py")


def _module():
    spec = importlib.util.spec_from_file_location("bench_search_step", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_merge_pools_every_rounds_steps():
    bench = _module()
    rounds = [dict(order="second", batch=4, kernels="auto", device="cpu", impl="fused_cpu", times=times,
                   median_s_per_step=statistics.median(times), peak_mem_mb=peak, images_per_s=0.0)
              for times, peak in (([3.0, 1.0, 2.0], 100.0), ([10.0, 4.0, 5.0], 120.0))]
    row = bench._merge(rounds)
    assert row["times"] == [3.0, 1.0, 2.0, 10.0, 4.0, 5.0]
    assert row["median_s_per_step"] == 3.5
    assert row["round_medians"] == [2.0, 5.0]
    assert row["peak_mem_mb"] == 120.0
    assert row["images_per_s"] == pytest.approx(4 / 3.5)
    # A failed round makes the row a failure, not a silently shorter sample.
    failed = dict(rounds[1], error="boom")
    assert bench._merge([rounds[0], failed])["error"] == "boom"
    assert bench._merge(rounds[:1]) is rounds[0]


def test_merge_median_is_over_all_steps():
    bench = _module()
    rounds = [dict(batch=1, times=t, median_s_per_step=statistics.median(t), peak_mem_mb=1.0)
              for t in ([1.0, 1.0, 9.0], [8.0, 8.0, 8.0])]
    assert bench._merge(rounds)["median_s_per_step"] == 8.0  # the medians' median would be 4.5


def test_json_rows_from_interleaved_rounds():
    out = subprocess.run([sys.executable, SCRIPT, "--order", "first", "--batch", "2", "--kernels", "reference,auto",
                          "--warmup", "0", "--steps", "1", "--rounds", "2", "--json"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["kernels"] for r in rows] == ["reference", "auto"]
    assert [r["impl"] for r in rows] == ["reference", "fused_cpu"]
    for r in rows:
        for key in ("order", "batch", "kernels", "device", "median_s_per_step", "peak_mem_mb"):
            assert key in r
        assert (r["order"], r["batch"], r["device"]) == ("first", 2, "cpu")
        assert len(r["times"]) == 2 and len(r["round_medians"]) == 2
        assert r["median_s_per_step"] == pytest.approx(statistics.median(r["times"]))
        assert r["peak_mem_mb"] > 100  # RSS of a process that imported torch, in MB
        assert r["ld_preload"] == os.environ.get("LD_PRELOAD", "")


def test_table_flags_a_preloaded_allocator():
    bench = _module()
    rows = [dict(order="second", batch=32, kernels=k, device="cpu", impl=i, median_s_per_step=t, images_per_s=32 / t,
                 peak_mem_mb=m, ld_preload="")
            for k, i, t, m in (("reference", "reference", 24.0, 6000.0), ("auto", "fused_cpu", 8.0, 2700.0))]
    table = bench._table(rows)
    assert "3.00x" in table and "0.45" in table
    assert "LD_PRELOAD" not in table
    for r in rows:
        r["ld_preload"] = "/usr/lib/libjemalloc.so.2"
    assert "note: LD_PRELOAD=/usr/lib/libjemalloc.so.2;" in bench._table(rows).splitlines()[-1]
