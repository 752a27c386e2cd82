"""Runs survive SIGKILL at random points: killed and resumed repeatedly, they end bitwise equal to a clean run."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import ROOT
from tests.test_cli import TINY, run

pytestmark = pytest.mark.slow


def completed_epochs(out) -> int:
    path = os.path.join(out, "metrics.jsonl")
    return sum(1 for line in open(path) if line.strip()) if os.path.exists(path) else 0


def checkpointed_epochs(out) -> int:
    """The epoch of the run's checkpoint: what a kill may never take back (metrics.jsonl lines past it are an epoch
    whose checkpoint had not landed yet, which the resumed run trims and recomputes)."""
    path = os.path.join(out, "checkpoint.pt")
    return torch.load(path, weights_only=True)["epoch"] if os.path.exists(path) else 0


def epoch_seconds(out) -> float:
    """The mean epoch time of a finished run (the reference run, to time the kills by)."""
    return sum(json.loads(x)["epoch_time_s"] for x in open(os.path.join(out, "metrics.jsonl"))) / \
        sum(1 for _ in open(os.path.join(out, "metrics.jsonl")))


def run_with_kills(script, args, out, kills, seed, epochs, epoch_time):
    """Start ``script``, SIGKILL it while it runs (after a random delay once it has started training, drawn over
    10-80% of the time its epochs left should take at ``epoch_time`` seconds each), resume, and repeat ``kills``
    times; then finish. Every kill must land in a live run with epochs still to go."""
    rng = random.Random(seed)
    cmd = [sys.executable, script, *args, "--out", out]
    for k in range(kills):
        before = checkpointed_epochs(out)
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log = os.path.join(out, "log.txt")
        size = os.path.getsize(log) if os.path.exists(log) else -1
        deadline = time.time() + 300
        while time.time() < deadline and p.poll() is None and (not os.path.exists(log) or
                                                                 os.path.getsize(log) <= size):
            time.sleep(0.05)  # until this process has set its run up and logged its start
        time.sleep(rng.uniform(0.1, 0.8) * (epochs - before) * epoch_time)
        assert p.poll() is None, f"kill {k + 1} came too late: the run had already ended"
        p.send_signal(signal.SIGKILL)
        assert p.wait() == -signal.SIGKILL
        assert completed_epochs(out) < epochs, f"kill {k + 1} landed after the last epoch"
        assert completed_epochs(out) >= before  # nothing checkpointed before the kill was lost
        assert checkpointed_epochs(out) >= before
        cmd = [sys.executable, script, "--resume", out, "--no-progress"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=600)


def final_state(out):
    return torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)["model"]


def assert_same_run(a, b):
    sa, sb = final_state(a), final_state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    epochs = lambda d: [json.loads(x)["epoch"] for x in open(os.path.join(d, "metrics.jsonl"))]
    assert epochs(a) == epochs(b)


def test_search_killed_at_random_points(tmp_path):
    args = [*TINY, "--epochs", "4"]
    run("train_search.py", *args, "--out", str(tmp_path / "ref"))
    run_with_kills("train_search.py", args, str(tmp_path / "killed"), kills=3, seed=1, epochs=4,
                   epoch_time=epoch_seconds(str(tmp_path / "ref")))
    assert_same_run(str(tmp_path / "ref"), str(tmp_path / "killed"))
    g = lambda d: json.load(open(os.path.join(d, "genotype.json")))
    assert g(tmp_path / "ref") == g(tmp_path / "killed")


def test_retraining_killed_at_random_points(tmp_path, small_cell_file):
    cell = small_cell_file
    # drop path and cutout draw random numbers every step: the RNG state must be restored exactly
    args = ["--genotype", str(cell), "--epochs", "6", "--init-channels", "8", "--layers", "4", "--cutout",
            "--cutout-length", "4", "--drop-path-prob", "0.3", "--no-progress"]
    run("train_final.py", *args, "--out", str(tmp_path / "ref"))
    run_with_kills("train_final.py", args, str(tmp_path / "killed"), kills=3, seed=2, epochs=6,
                   epoch_time=epoch_seconds(str(tmp_path / "ref")))
    assert_same_run(str(tmp_path / "ref"), str(tmp_path / "killed"))


@pytest.mark.parametrize("method", ["enas", "spos"])
def test_sampling_search_killed_mid_search(tmp_path, method):
    """The cells drawn at every step, ENAS's controller (its weights, Adam state and baseline) and the final choice
    on the shared weights continue exactly after a kill."""
    args = ["--method", method, "--space", "nb201", "--nb201-cells", "1", "--init-channels", "4", "--batch-size",
            "128", "--epochs", "4", "--no-progress"]
    run("train_search.py", *args, "--out", str(tmp_path / "ref"))
    run_with_kills("train_search.py", args, str(tmp_path / "killed"), kills=2, seed=3, epochs=4,
                   epoch_time=epoch_seconds(str(tmp_path / "ref")))
    assert_same_run(str(tmp_path / "ref"), str(tmp_path / "killed"))
    g = lambda d: json.load(open(os.path.join(d, "genotype.json")))
    assert g(tmp_path / "ref") == g(tmp_path / "killed")


def _lines(out, marker):
    return [line.split(" INFO ", 1)[-1] for line in open(os.path.join(out, "log.txt")) if marker in line]


@pytest.mark.parametrize("what,marker,after", [
    (["--selection", "pt", "--pt-interval", "0.5", "--pt-val-batches", "1"], "pt ", "pt 2/6"),
    (["--method", "spos", "--spos-generations", "4"], "spos: generation", "generation 2/4")], ids=["pt", "spos"])
def test_final_selection_killed_continues_from_its_last_decision(tmp_path, what, marker, after):
    """DARTS-PT's decisions (with fine-tuning between them) and SPOS's generations come after the last epoch; a
    kill there resumes from the last one, and every later decision is the uninterrupted run's."""
    args = ["--space", "nb201", "--nb201-cells", "1", "--init-channels", "4", "--batch-size", "64", "--epochs", "1",
            "--no-progress", *what]
    ref, killed = str(tmp_path / "ref"), str(tmp_path / "killed")
    run("train_search.py", *args, "--out", ref)
    p = subprocess.Popen([sys.executable, "train_search.py", *args, "--out", killed], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log, deadline = os.path.join(killed, "log.txt"), time.time() + 300
    while p.poll() is None and time.time() < deadline and not (
            os.path.exists(log) and after in open(log).read() and os.path.exists(os.path.join(killed,
                                                                                             "selection.pt"))):
        time.sleep(0.02)
    assert p.poll() is None, "the run ended before the kill"
    p.send_signal(signal.SIGKILL)
    p.wait()
    resumed = run("train_search.py", "--resume", killed, "--no-progress")
    assert "resuming the selection phase" in resumed.stdout
    assert _lines(killed, marker)[-3:] == _lines(ref, marker)[-3:]
    g = lambda d: json.load(open(os.path.join(d, "genotype.json")))
    assert g(ref) == g(killed) and not os.path.exists(os.path.join(killed, "selection.pt"))
