"""Several processes (gloo on CPU): identical α and weights on every rank, and 2 x B equals 1 x 2B."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from darts.bilevel import BilevelOptimizer
from darts.run.distributed import DistEnv, all_reduce_mean, wrap_ddp
from darts.ops import DARTS_PRIMITIVES
from darts.spaces import Supernet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B, STEPS = 4, 3


def make(order, hvp, frozen_bn, env=None):
    torch.manual_seed(0)
    # The reference mixed op: what is tested here is the gradient averaging, not the kernels.
    m = Supernet(4, 5, 3, DARTS_PRIMITIVES, steps=2, multiplier=2, kernels="reference").double()
    if frozen_bn:  # BN from running statistics: a per-sample map, so a batch splits exactly across ranks
        m.eval()
    w_opt = torch.optim.SGD(m.weight_parameters(), 0.05, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(m.arch_parameters(), 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    kw = {}
    if env is not None:
        kw = dict(reduce=lambda ts: all_reduce_mean(ts, env),
                  train_module=wrap_ddp(m, env, ignore=("alphas.normal", "alphas.reduce")))
    return m, BilevelOptimizer(m, nn.CrossEntropyLoss(), w_opt, a_opt, order, hvp, **kw)


def data(step, n):
    g = torch.Generator().manual_seed(100 + step)
    batch = lambda: (torch.randn(n, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 5, (n,), generator=g))
    return batch(), batch()


def trajectory(m, bo, rank, world):
    """STEPS bilevel steps; rank r takes rows r::world of each global batch of world*B samples. Returns the
    first α gradient and the final state."""
    first_grad = None
    for step in range(STEPS):
        (xt, yt), (xv, yv) = data(step, B * world)
        train, val = (xt[rank::world], yt[rank::world]), (xv[rank::world], yv[rank::world])
        if step == 0:
            first_grad = [g.clone() for g in bo.arch_gradient(train, val, 0.05)[0]]
        bo.step(train, val, 0.05)
    return {"grad": first_grad, "alphas": [a.detach().clone() for a in m.arch_parameters()],
            "weights": [w.detach().clone() for w in m.weight_parameters()], "genotype": m.genotype().to_dict()}


def _worker(rank, world, store, order, hvp, frozen_bn, out):
    torch.set_num_threads(1)  # two ranks on two cores
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    env = DistEnv(rank, world, torch.device("cpu"))
    m, bo = make(order, hvp, frozen_bn, env)
    torch.save(trajectory(m, bo, rank, world), f"{out}.{rank}")
    dist.destroy_process_group()


def run_ranks(tmp_path, order, hvp, frozen_bn, world=2):
    out = str(tmp_path / f"{order}-{hvp}-{frozen_bn}")
    mp.spawn(_worker, args=(world, str(tmp_path / f"store-{order}-{hvp}-{frozen_bn}"), order, hvp, frozen_bn, out),
             nprocs=world, join=True)
    return [torch.load(f"{out}.{r}", weights_only=True) for r in range(world)]


@pytest.mark.parametrize("order,hvp", [("first", "finite-difference"), ("second", "finite-difference"),
                                       ("second", "exact")])
def test_ranks_hold_identical_alpha_and_weights(tmp_path, order, hvp):
    r0, r1 = run_ranks(tmp_path, order, hvp, frozen_bn=False)
    for key in ("alphas", "weights"):
        for a, b in zip(r0[key], r1[key]):
            assert torch.equal(a, b), key
    assert r0["genotype"] == r1["genotype"]
    # and the step really moved α
    assert not torch.equal(r0["alphas"][0], make(order, hvp, False)[0].alphas.normal.detach())


@pytest.mark.parametrize("order,hvp", [("first", "finite-difference"), ("second", "exact")])
def test_two_ranks_of_b_equal_one_process_of_2b(tmp_path, order, hvp):
    ranks = run_ranks(tmp_path, order, hvp, frozen_bn=True)
    # one process sees the whole global batch of 2B each step
    m, bo = make(order, hvp, frozen_bn=True)
    first_grad = None
    for step in range(STEPS):
        train, val = data(step, 2 * B)
        if step == 0:
            first_grad = bo.arch_gradient(train, val, 0.05)[0]
        bo.step(train, val, 0.05)
    for a, b in zip(ranks[0]["grad"], first_grad):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    for a, b in zip(ranks[0]["weights"], m.weight_parameters()):
        torch.testing.assert_close(a, b.detach(), rtol=1e-7, atol=1e-10)
    for a, b in zip(ranks[0]["alphas"], m.arch_parameters()):
        torch.testing.assert_close(a, b.detach(), rtol=1e-6, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--method", "gdas", "--hessian-every", "2"]], ids=["darts", "gdas"])
def test_torchrun_search(tmp_path, extra):
    """GDAS leaves the unsampled ops without gradients (DDP must be told) and the Hessian eigenvalue is
    all-reduced: both must work across processes too."""
    out = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29611",
           "train_search.py", "--init-channels", "4", "--layers", "3", "--nodes", "2", "--batch-size", "64",
           "--epochs", "2", "--out", out, "--no-progress", *extra]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.load(open(os.path.join(out, "config.json")))["meta"]["world_size"] == 2
    assert [json.loads(x)["epoch"] for x in open(os.path.join(out, "metrics.jsonl"))] == [1, 2]  # rank 0 only
    assert os.path.exists(os.path.join(out, "genotype.json"))


@pytest.mark.slow
def test_torchrun_retraining(tmp_path, small_cell_file):
    cell = small_cell_file
    out = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29612",
           "train_final.py", "--genotype", str(cell), "--epochs", "2", "--init-channels", "4", "--layers", "3",
           "--drop-path-prob", "0.2", "--amp", "--channels-last", "--out", out, "--no-progress"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    recs = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    assert [r["epoch"] for r in recs] == [1, 2] and 0 <= recs[-1]["test_acc"] <= 1


LOGGED = '''
import os
import torch.distributed as dist
from darts.methods import register_method
from darts.methods.{module} import {cls}


@register_method
class Logged({cls}):
    """{cls} writing every cell it trains, and its final cell, to a file per rank."""
    name = "{name}-logged"
    flag_prefix = "logged"
    presets = {{}}

    def _write(self, what):
        with open(os.environ["PATHS_LOG"] + "." + str(dist.get_rank()), "a") as f:
            f.write(what + "\\n")

    def resample(self, model):
        super().resample(model)
        self._write(str(self.path))

    def final_genotype(self, model, ctx):
        g = super().final_genotype(model, ctx)
        self._write("final " + str(g))
        return g
'''


@pytest.mark.slow
@pytest.mark.parametrize("name,module,cls,extra", [
    ("enas", "enas", "ENAS", ["--logged-steps", "2", "--logged-aggregate", "2", "--logged-samples", "3",
                              "--logged-eval-samples", "2"]),
    ("spos", "spos", "SPOS", ["--logged-population", "4", "--logged-top", "2", "--logged-mutations", "1",
                              "--logged-crossovers", "1", "--logged-generations", "2", "--logged-bn-batches", "1",
                              "--logged-val-batches", "1"])])
def test_torchrun_ranks_sample_the_same_cells(tmp_path, name, module, cls, extra):
    plugin = tmp_path / "logged.py"
    plugin.write_text(LOGGED.format(module=module, cls=cls, name=name))
    out, log = str(tmp_path / "run"), str(tmp_path / "paths")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29613",
           "train_search.py", "--plugin", str(plugin), "--method", f"{name}-logged", "--space", "nb201",
           "--nb201-cells", "1", "--init-channels", "4", "--batch-size", "64", "--epochs", "2", "--out", out,
           "--no-progress", *extra]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "PATHS_LOG": log})
    assert p.returncode == 0, p.stderr[-3000:]
    r0, r1 = (open(f"{log}.{r}").read().splitlines() for r in (0, 1))
    steps = [x for x in r0 if not x.startswith("final")]
    assert r0 == r1 and len(steps) >= 4 and len(set(steps)) > 1 and r0[-1].startswith("final")
    g = json.load(open(os.path.join(out, "genotype.json")))
    assert r0[-1] == "final " + g["arch"]
