"""End to end through the command line, as a user runs it: search, retrain, resume, plug-in ops, bad input."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
TINY = ["--init-channels", "4", "--layers", "3", "--nodes", "2", "--batch-size", "128", "--no-progress"]


def run(script, *args, check=True):
    p = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    if check and p.returncode:
        raise AssertionError(f"{script} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def alphas(run_dir):
    sd = torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=True)["model"]
    return sd["alphas.normal"], sd["alphas.reduce"]


def test_search_then_retrain(tmp_path):
    out = str(tmp_path / "search")
    run("train_search.py", *TINY, "--epochs", "2", "--out", out)
    assert {"genotype.json", "config.json", "metrics.jsonl", "checkpoint.pt", "log.txt", "tb"} <= set(os.listdir(out))
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(out, "tb")))
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["config"]["layers"] == 3 and cfg["meta"]["torch"] == torch.__version__ and "git_commit" in cfg["meta"]
    lines = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    assert [r["epoch"] for r in lines] == [1, 2]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "alpha_normal", "alpha_reduce", "genotype"):
        assert key in lines[-1]
    rows = torch.tensor(lines[-1]["alpha_normal"])
    assert rows.shape == (5, 8)
    torch.testing.assert_close(rows.sum(1), torch.ones(5))  # softmax(α) rows
    g = json.load(open(os.path.join(out, "genotype.json")))
    assert g == lines[-1]["genotype"] and len(g["normal"]) == 4 and g["primitives"][0] == "none"
    # the genotype saved is the one α encodes
    from darts.genotype import derive_genotype
    a_n, a_r = alphas(out)
    derived = derive_genotype(a_n.softmax(-1), a_r.softmax(-1), g["primitives"], steps=2)
    assert derived.to_dict() == g

    final = str(tmp_path / "final")
    run("train_final.py", "--genotype", os.path.join(out, "genotype.json"), "--epochs", "1", "--init-channels", "4",
        "--layers", "3", "--cutout", "--cutout-length", "4", "--out", final, "--no-progress")
    rec = [json.loads(x) for x in open(os.path.join(final, "metrics.jsonl"))][-1]
    assert 0.0 <= rec["test_acc"] <= 1.0 and rec["params"] > 0
    assert json.load(open(os.path.join(final, "genotype.json"))) == g


def test_retrain_with_auxiliary_head_and_drop_path(tmp_path, small_cell_file):
    final = str(tmp_path / "final")
    g = json.loads(small_cell_file.read_text())
    run("train_final.py", "--genotype", str(small_cell_file), "--dataset", "synthetic", "--epochs", "2",
        "--init-channels", "4", "--layers", "3", "--batch-size", "256", "--auxiliary", "--drop-path-prob", "0.3",
        "--out", final, "--no-progress")
    recs = [json.loads(x) for x in open(os.path.join(final, "metrics.jsonl"))]
    assert [r["drop_path_prob"] for r in recs] == [0.0, 0.15]  # linear ramp by epoch
    from darts.final import NetworkCIFAR, count_parameters
    from darts.genotype import Genotype
    with_aux = NetworkCIFAR(4, 10, 3, True, Genotype.from_dict(g))
    without = NetworkCIFAR(4, 10, 3, False, Genotype.from_dict(g))
    assert recs[0]["params"] == count_parameters(with_aux) == sum(p.numel() for p in without.parameters())
    assert_clear_error(run("train_final.py", "--genotype", str(small_cell_file), "--auxiliary", check=False),
                       "--auxiliary needs at least 5x5")


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    ref = str(tmp_path / "ref")
    run("train_search.py", *TINY, "--epochs", "3", "--out", ref)

    out = str(tmp_path / "killed")
    p = subprocess.Popen([sys.executable, "train_search.py", *TINY, "--epochs", "3", "--out", out], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = os.path.join(out, "checkpoint.pt")
    deadline = time.time() + 300
    while not os.path.exists(ckpt) and time.time() < deadline and p.poll() is None:
        time.sleep(0.02)
    assert p.poll() is None, "the run ended before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 1, "the run was not interrupted after its first epoch"
    run("train_search.py", "--resume", out, "--no-progress")
    for a, b in zip(alphas(ref), alphas(out)):
        assert torch.equal(a, b)
    assert json.load(open(os.path.join(ref, "genotype.json"))) == json.load(open(os.path.join(out, "genotype.json")))
    assert [json.loads(x)["epoch"] for x in open(os.path.join(out, "metrics.jsonl"))] == [1, 2, 3]


def test_user_op_plugin(tmp_path):
    out = str(tmp_path / "plug")
    prims = "none,skip_connect,max_pool_3x3,conv_3x3_gelu"
    run("train_search.py", *TINY, "--epochs", "1", "--ops-module", "examples/my_ops.py", "--primitives", prims,
        "--out", out)
    g = json.load(open(os.path.join(out, "genotype.json")))
    assert g["primitives"] == prims.split(",")
    assert {op for op, _ in g["normal"] + g["reduce"]} <= set(prims.split(",")) - {"none"}
    assert alphas(out)[0].shape == (5, 4)
    # the same module works for retraining the cell that uses the op
    cell = {"normal": [["conv_3x3_gelu", 0], ["skip_connect", 1], ["conv_3x3_gelu", 2], ["skip_connect", 0]],
            "normal_concat": [2, 3], "reduce": [["max_pool_3x3", 0], ["conv_3x3_gelu", 1], ["skip_connect", 2],
                                                ["conv_3x3_gelu", 0]], "reduce_concat": [2, 3]}
    (tmp_path / "cell.json").write_text(json.dumps(cell))
    run("train_final.py", "--genotype", str(tmp_path / "cell.json"), "--ops-module", "examples/my_ops.py",
        "--epochs", "1", "--init-channels", "4", "--layers", "3", "--out", str(tmp_path / "f"), "--no-progress")


def assert_clear_error(p, *fragments):
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), p.stderr
    for f in fragments:
        assert f in err[0], err[0]
    assert "Traceback" not in p.stderr


def test_bad_input_catalogue(tmp_path):
    assert_clear_error(run("train_search.py", "--primitives", "none,sep_conv_3x", "--out", str(tmp_path / "a"),
                           check=False), "unknown op 'sep_conv_3x'", "sep_conv_3x3")
    assert not os.path.exists(tmp_path / "a"), "a failed start must not leave a run directory"
    assert_clear_error(run("train_search.py", "--ops-module", "no_such_module_xyz", check=False),
                       "could not import plug-in")
    assert_clear_error(run("train_search.py", "--dataset", "cifar10", "--data", str(tmp_path / "missing"),
                           check=False), "does not exist")
    assert_clear_error(run("train_search.py", "--epochs", "0", check=False), "--epochs must be positive")
    assert_clear_error(run("train_search.py", "--lr", "-1", check=False), "--lr must be positive")
    assert_clear_error(run("train_search.py", "--batch-size", "5000", check=False), "larger than the split")
    bad = tmp_path / "bad.json"
    bad.write_text('{"normal": [["sep_conv_3x3", 0]], "normal_concat": [2], "reduce": [], "reduce_concat": [2]}')
    assert_clear_error(run("train_final.py", "--genotype", str(bad), check=False), "two (op, input) pairs")
    assert_clear_error(run("train_final.py", "--genotype", str(tmp_path / "none.json"), check=False),
                       "does not exist")


def test_existing_run_is_never_overwritten_and_resume_is_checked(tmp_path):
    out = str(tmp_path / "run")
    run("train_search.py", *TINY, "--epochs", "1", "--out", out)
    before = {f: open(os.path.join(out, f), "rb").read() for f in ("checkpoint.pt", "genotype.json", "config.json")}
    assert_clear_error(run("train_search.py", *TINY, "--epochs", "1", "--out", out, check=False), "--resume")
    assert_clear_error(run("train_search.py", "--resume", out, "--layers", "5", check=False),
                       "cannot change a resumed run's settings", "--layers")
    with open(os.path.join(out, "checkpoint.pt"), "r+b") as f:
        f.truncate(100)
    truncated = open(os.path.join(out, "checkpoint.pt"), "rb").read()
    assert_clear_error(run("train_search.py", "--resume", out, check=False), "cannot load checkpoint")
    assert open(os.path.join(out, "checkpoint.pt"), "rb").read() == truncated
    for f in ("genotype.json", "config.json"):
        assert open(os.path.join(out, f), "rb").read() == before[f]


def test_checkpoint_from_another_search_space(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    run("train_search.py", *TINY, "--epochs", "1", "--out", a)
    run("train_search.py", *TINY, "--epochs", "1", "--primitives", "none,skip_connect,sep_conv_3x3", "--out", b)
    os.replace(os.path.join(a, "checkpoint.pt"), os.path.join(b, "checkpoint.pt"))
    assert_clear_error(run("train_search.py", "--resume", b, check=False), "another search space")
    # a checkpoint of the same space written by another search method
    from darts.run.checkpoint import load_checkpoint, save_checkpoint
    state = load_checkpoint(os.path.join(b, "checkpoint.pt"))
    state.pop("format")
    save_checkpoint({**state, "primitives": ["none", "skip_connect", "sep_conv_3x3"], "method": "gdas"},
                    os.path.join(b, "checkpoint.pt"))
    assert_clear_error(run("train_search.py", "--resume", b, check=False), "method = 'gdas'")


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    out = str(tmp_path / "nan")
    p = run("train_search.py", *TINY, "--epochs", "1", "--lr", "1e30", "--out", out, check=False)
    assert_clear_error(p, "epoch 1/1, step")
    assert "nan" in p.stderr or "inf" in p.stderr


def test_help():
    for script in ("train_search.py", "train_final.py"):
        p = run(script, "--help")
        assert "--resume" in p.stdout and "--init-channels" in p.stdout
    p = run("train_search.py", "--help")
    assert "--pc-k" in p.stdout and "--nb201-cells" in p.stdout and "--method pcdarts:" in p.stdout  # their groups


def test_the_darts_forge_command_runs_from_any_directory(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "darts-forge")
    if not os.path.exists(exe):
        pytest.skip(f"the console script is not installed beside {sys.executable} (pip install . installs it)")
    p = subprocess.run([exe, "zoo"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "DARTS_V2" in p.stdout
    p = subprocess.run([exe, "search", *TINY, "--epochs", "1", "--out", "here"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "here" / "genotype.json").exists()
    p = subprocess.run([exe, "serch"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "did you mean search" in p.stderr


def test_more_bad_inputs(tmp_path):
    broken = tmp_path / "broken_ops.py"
    broken.write_text("raise RuntimeError('boom at import')\n")
    assert_clear_error(run("train_search.py", "--ops-module", str(broken), check=False),
                       "could not import plug-in", "boom at import")
    code = tmp_path / "code.txt"
    code.write_text("Genotype(normal=__import__('os').system('touch PWNED'), normal_concat=[2], reduce=[], "
                    "reduce_concat=[2])")
    assert_clear_error(run("train_final.py", "--genotype", str(code), check=False), "unsupported expression")
    assert not os.path.exists(os.path.join(ROOT, "PWNED"))
    one = tmp_path / "one_class" / "cats"
    one.mkdir(parents=True)
    from PIL import Image
    for i in range(4):
        Image.new("RGB", (8, 8)).save(one / f"{i}.png")
    assert_clear_error(run("train_search.py", "--dataset", "folder", "--data", str(tmp_path / "one_class"),
                           check=False), "at least 2")
    (tmp_path / "empty").mkdir()
    assert_clear_error(run("train_search.py", "--dataset", "folder", "--data", str(tmp_path / "empty"), check=False),
                       "ImageFolder")


def test_pickled_checkpoint_is_refused_on_resume(tmp_path):
    out = str(tmp_path / "run")
    run("train_search.py", *TINY, "--epochs", "1", "--out", out)
    evil = ("import os, torch\n"
            "class Evil:\n"
            "    def __reduce__(self):\n"
            "        return (os.system, ('touch " + str(tmp_path / "PWNED") + "',))\n"
            "torch.save({'format': 1, 'kind': 'search', 'x': Evil()}, '" + os.path.join(out, "checkpoint.pt") + "')\n")
    subprocess.run([sys.executable, "-c", evil], check=True)
    assert_clear_error(run("train_search.py", "--resume", out, check=False), "cannot load checkpoint")
    assert not os.path.exists(tmp_path / "PWNED")
