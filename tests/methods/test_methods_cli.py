"""Every method, space and safeguard runs from the command line for one digits epoch, as a user starts it."""
import json
import os
import re

import pytest
import torch

from darts.methods import list_methods
from tests.test_cli import run

pytestmark = pytest.mark.slow
# Small enough for CI; the methods' own defaults otherwise (K=4 for PC-DARTS needs channels divisible by 4).
SMALL = ["--epochs", "1", "--init-channels", "8", "--layers", "3", "--batch-size", "128", "--no-progress"]


def metrics(out):
    return [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]


@pytest.mark.parametrize("method", list_methods())
def test_one_digits_epoch_per_method(method, tmp_path):
    out = str(tmp_path / method)
    p = run("train_search.py", "--method", method, *SMALL, "--out", out)
    assert f"method {method}" in p.stdout
    rec = metrics(out)[-1]
    g = json.load(open(os.path.join(out, "genotype.json")))
    # two ops per node, or fewer under FairDARTS's threshold rule (then [op, input, node] triples); the sampling
    # methods choose their final cell after the last epoch, by its accuracy on the shared weights
    assert len(g["normal"]) == 8 or method == "fairdarts"
    assert rec["genotype"] == g or method in ("enas", "rsws", "spos")
    assert "param_free_normal" in rec and "skip_normal" in rec
    ckpt = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)
    assert ckpt["method"] == method
    if method == "pcdarts":
        assert "alphas.beta_normal" in ckpt["model"]
    if method == "gdas":
        assert rec["tau"] == 10.0
    if method == "darts-":
        assert rec["aux_skip_beta"] == 1.0
    if method == "fairdarts":
        assert {"above_threshold_normal", "above_threshold_reduce"} <= set(rec)
    if method in ("drnas", "fairdarts", "sdarts-rs"):  # their authors' spaces have no `none`
        assert g["primitives"] == ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                                   "dil_conv_3x3", "dil_conv_5x5"]


def test_method_option_for_another_method_is_an_error(tmp_path):
    p = run("train_search.py", "--pc-k", "2", *SMALL, "--out", str(tmp_path / "x"), check=False)
    assert p.returncode == 2 and "--pc-k is an option of --method pcdarts" in p.stderr
    assert not os.path.exists(tmp_path / "x")


def test_resume_refuses_another_method(tmp_path):
    out = str(tmp_path / "r")
    run("train_search.py", *SMALL, "--out", out)
    p = run("train_search.py", "--resume", out, "--method", "gdas", check=False)
    assert p.returncode == 2 and "--method" in p.stderr


def test_skip_safeguards_need_skip_connect(tmp_path):
    p = run("train_search.py", *SMALL, "--primitives", "none,sep_conv_3x3,max_pool_3x3", "--early-stop", "skip",
            "--out", str(tmp_path / "s"), check=False)
    assert p.returncode == 2 and "skip_connect" in p.stderr


def test_early_stop_skip_and_hessian_logging(tmp_path):
    # a space of skip connections only: the derived normal cell has 8 of them, so DARTS+ stops after epoch 1
    out = str(tmp_path / "skip")
    p = run("train_search.py", *SMALL, "--epochs", "3", "--primitives", "none,skip_connect", "--early-stop", "skip",
            "--out", out)
    assert "early stop after epoch 1/3" in p.stdout and len(metrics(out)) == 1
    # resuming a run that stopped does not train further
    p = run("train_search.py", "--resume", out)
    assert "stopped early" in p.stdout and len(metrics(out)) == 1
    out = str(tmp_path / "hess")
    run("train_search.py", *SMALL, "--hessian-every", "1", "--out", out)
    assert isinstance(metrics(out)[-1]["hessian_eigenvalue"], float)


def test_nb201_space_one_epoch(tmp_path):
    out = str(tmp_path / "nb")
    p = run("train_search.py", "--space", "nb201", "--epochs", "1", "--batch-size", "128", "--no-progress",
            "--out", out)
    g = json.load(open(os.path.join(out, "genotype.json")))
    assert g["format"] == "nb201-genotype/1" and g["arch"].count("|+|") == 2
    assert f"genotype = {g['arch']}" in p.stdout
    # AutoDL-Projects' NAS-Bench-201 optimiser: weight decay 5e-4 with Nesterov momentum
    cfg = json.load(open(os.path.join(out, "config.json")))["config"]
    assert (cfg["weight_decay"], cfg["nesterov"]) == (5e-4, True)
    group = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)["w_opt"]["param_groups"][0]
    assert group["nesterov"] is True and group["weight_decay"] == 5e-4
    p = run("train_search.py", "--space", "nb201", "--primitives", "none,sep_conv_3x3", "--epochs", "1",
            "--out", str(tmp_path / "bad"), check=False)
    assert p.returncode == 2 and "nor_conv_3x3" in p.stderr


def test_retraining_an_nb201_cell_trains_the_benchmarks_network(tmp_path):
    path = tmp_path / "g.json"
    arch = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    path.write_text(json.dumps({"format": "nb201-genotype/1", "arch": arch}))
    out = str(tmp_path / "f")
    p = run("train_final.py", "--genotype", str(path), "--epochs", "1", "--layers", "1", "--no-progress", "--out", out)
    assert "NB201Network" in p.stdout
    saved = json.load(open(os.path.join(out, "config.json")))["config"]
    # the benchmark's optimiser (200E.config), the digits scale for the rest
    assert saved["nesterov"] is True and saved["weight_decay"] == 5e-4 and saved["grad_clip"] == 0.0
    assert saved["lr"] == 0.1 and saved["init_channels"] == 16
    assert json.load(open(os.path.join(out, "genotype.json")))["arch"] == arch
    assert 0 <= metrics(out)[-1]["test_acc"] <= 1


def test_a_users_method_from_its_own_file(tmp_path):
    out = str(tmp_path / "mine")
    p = run("train_search.py", "--plugin", "examples/my_method.py", "--method", "tempered", "--tempered-t-start", "3",
            *SMALL, "--out", out)
    assert "method tempered" in p.stdout and metrics(out)[-1]["temperature"] == 3.0  # the option from the command line
    assert json.load(open(os.path.join(out, "config.json")))["config"]["tempered_t_start"] == 3.0
    p = run("train_search.py", "--plugin", "examples/my_method.py", "--method", "tempered", "--tempered-t-start", "-1",
            *SMALL, "--out", str(tmp_path / "neg"), check=False)
    assert p.returncode == 2 and "--tempered-t-start must be positive" in p.stderr
    p = run("train_search.py", "--plugin", "examples/my_method.py", "--tempered-t-start", "3", *SMALL, "--out",
            str(tmp_path / "other"), check=False)
    assert p.returncode == 2 and "--tempered-t-start is an option of --method tempered" in p.stderr
    p = run("train_search.py", "--method", "nosuch", *SMALL, "--out", str(tmp_path / "x"), check=False)
    assert p.returncode == 2 and "unknown search method 'nosuch'" in p.stderr


def test_a_users_space_from_its_own_file(tmp_path):
    out = str(tmp_path / "chain")
    p = run("train_search.py", "--plugin", "examples/my_space.py", "--space", "chain", "--chain-nodes", "2",
            "--epochs", "1", "--init-channels", "8", "--batch-size", "128", "--no-progress", "--out", out)
    assert "space chain" in p.stdout
    g = json.load(open(os.path.join(out, "genotype.json")))
    assert g["format"] == "chain-genotype/1" and len(g["chain"]) == 2 and "none" not in g["chain"]
    assert metrics(out)[-1]["alpha_chain"] and len(metrics(out)[-1]["alpha_chain"]) == 2
    # a method of the library in the user's space, and the space's discrete network retrained
    run("train_search.py", "--plugin", "examples/my_space.py", "--space", "chain", "--method", "gdas", "--epochs", "1",
        "--init-channels", "8", "--batch-size", "128", "--no-progress", "--out", str(tmp_path / "gdas"))
    run("train_final.py", "--plugin", "examples/my_space.py", "--genotype", os.path.join(out, "genotype.json"),
        "--epochs", "1", "--init-channels", "4", "--layers", "1", "--no-progress", "--out", str(tmp_path / "f"))
    assert metrics(str(tmp_path / "f"))[-1]["params"] > 0


# -- the sampling searches and DARTS-PT, in both spaces ---------------------------------------------------------

NB201_SMALL = ["--space", "nb201", "--nb201-cells", "1", "--epochs", "1", "--init-channels", "8", "--batch-size",
               "128", "--no-progress"]


@pytest.mark.parametrize("method", ["enas", "rsws", "spos"])
def test_sampling_methods_one_nb201_epoch(method, tmp_path):
    out = str(tmp_path / method)
    p = run("train_search.py", "--method", method, *NB201_SMALL, "--out", out)
    g = json.load(open(os.path.join(out, "genotype.json")))
    assert g["format"] == "nb201-genotype/1" and g["arch"].count("|+|") == 2
    final = {"enas": "enas: best of 20 sampled cells", "rsws": "rsws: best of 30 random cells",
             "spos": "spos: generation 3/3"}[method]
    assert final in p.stdout  # the small presets' final choice on the shared weights
    rec = metrics(out)[-1]
    assert 0 <= rec["path_val_acc"] <= 1  # the epoch's cell with batch statistics
    if method == "enas":
        assert {"controller_reward", "controller_baseline", "controller_entropy"} <= set(rec)
        ckpt = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)
        assert any(k.startswith("alphas.controller.") for k in ckpt["model"])
        cfg = json.load(open(os.path.join(out, "config.json")))["config"]
        assert (cfg["arch_lr"], cfg["arch_beta1"]) == (0.001, 0.0)  # AutoDL-Projects' controller Adam in NB201


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_darts_pt_selection_one_epoch(space, tmp_path):
    out = str(tmp_path / space)
    args = SMALL + ["--nodes", "2"] if space == "darts" else NB201_SMALL
    p = run("train_search.py", *args, "--selection", "pt", "--pt-interval", "0.2", "--pt-val-batches", "1",
            "--out", out)
    assert "DARTS-PT selection" in p.stdout
    g = json.load(open(os.path.join(out, "genotype.json")))
    decisions = [line for line in p.stdout.splitlines() if re.search(r" pt \d+/\d+: .* edge ", line)]
    if space == "darts":  # 5 decisions on an edge of each cell type, then node 3's inputs in each
        assert len(decisions) == 10 and p.stdout.count("keeps inputs") == 2 and len(g["normal"]) == 4
        assert "pt 6/6: normal node 3" in p.stdout
    else:
        assert len(decisions) == 6 and g["format"] == "nb201-genotype/1" and "pt 6/6: cell edge" in p.stdout


def test_sampling_methods_refuse_what_needs_alpha(tmp_path):
    for extra, words in ((["--order", "second"], "--order second"), (["--selection", "pt"], "--selection pt"),
                         (["--max-skip", "1"], "--max-skip")):
        p = run("train_search.py", "--method", "spos", *extra, "--out", str(tmp_path / "x"), check=False)
        assert p.returncode == 2 and words in p.stderr, p.stderr


def test_sampling_methods_from_python(tmp_path):
    import darts

    r = darts.search(method="enas", space="darts", epochs=1, init_channels=4, layers=3, nodes=2, batch_size=128,
                     enas_steps=2, enas_aggregate=2, enas_samples=3, progress=False, out=str(tmp_path / "e"))
    assert len(r.genotype.normal) == 4 and r.metrics[-1]["controller_baseline"] != 0
    r = darts.search(method="darts", space="nb201", nb201_cells=1, epochs=1, batch_size=128, selection="pt",
                     pt_interval=0.0, pt_val_batches=1, progress=False, out=str(tmp_path / "p"))
    assert str(r.genotype).count("~") == 6 and r.metrics[-1]["epoch"] == 1
