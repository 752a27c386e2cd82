"""The fault suite: hostile inputs and failing file systems, each tried with real processes. Every case either
runs, or stops with one line ``error: ...`` and exit 2; no Python traceback reaches the user, and nothing in a run
directory that the process did not itself write in this run is changed (hashed before and after).

Read-only and full-disk conditions are made by injecting the ``OSError`` (EROFS, ENOSPC) at the write, through a
wrapper that patches the running process before it calls the command (CI runs as root, where file modes stop
nothing).
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
TINY = ["--init-channels", "4", "--layers", "3", "--nodes", "2", "--batch-size", "128", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli(*args, wrapper: str = "", cwd=ROOT, timeout=600):
    """Run ``darts-forge`` (``search``, ``retrain``, ...) in a new process; ``wrapper`` is Python run first."""
    code = textwrap.dedent(wrapper) + "\nimport sys\nfrom darts.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def clean_error(p, *fragments, code=2):
    """The process stopped with exit ``code`` and one ``error:`` line holding ``fragments``, without a traceback."""
    assert p.returncode == code, (p.returncode, p.stdout[-1500:], p.stderr[-1500:])
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def tree_hash(path) -> dict:
    """Every file under ``path`` (but the lock file, which records its last holder) with its digest."""
    out = {}
    for folder, _, files in os.walk(path):
        for f in files:
            full = os.path.join(folder, f)
            if f != ".lock":
                out[os.path.relpath(full, path)] = hashlib.sha256(open(full, "rb").read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-epoch search, to copy and damage."""
    out = str(tmp_path_factory.mktemp("finished") / "run")
    p = cli("search", *TINY, "--epochs", "2", "--out", out)
    assert p.returncode == 0, p.stderr
    return out


def copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return str(dst)


# -- 1. one writer per run directory ------------------------------------------------------------------------


BARRIER = """
    import os, sys, time
    import darts.cli  # the slow imports happen before the barrier
    open(sys.argv[-1] + ".ready-" + str(os.getpid()), "w").close()
    while not os.path.exists(sys.argv[-1]):
        time.sleep(0.001)
    sys.argv.pop()
"""


def test_two_runs_released_onto_one_out_at_once_exactly_one_runs(tmp_path):
    for attempt in range(3):
        out, barrier = str(tmp_path / f"race{attempt}"), str(tmp_path / f"go{attempt}")
        code = textwrap.dedent(BARRIER) + "\nfrom darts.cli import main\nsys.exit(main(sys.argv[1:]))\n"
        procs = [subprocess.Popen([sys.executable, "-c", code, "search", *TINY, "--epochs", "1", "--seed", str(s),
                                   "--out", out, barrier], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=ENV) for s in (1, 2)]
        deadline = time.time() + 120
        while len([f for f in os.listdir(tmp_path) if f.startswith(f"go{attempt}.ready")]) < 2:
            assert time.time() < deadline
            time.sleep(0.01)
        open(barrier, "w").close()
        results = [(p.wait(timeout=600), p.stdout.read(), p.stderr.read()) for p in procs]
        codes = sorted(r[0] for r in results)
        assert codes == [0, 2], results
        loser = next(r for r in results if r[0] == 2)
        assert "Traceback" not in loser[2]
        assert "is in use by PID" in loser[2] or "already holds a run" in loser[2], loser[2]
        winner_seed = json.load(open(os.path.join(out, "config.json")))["config"]["seed"]
        assert [json.loads(x)["epoch"] for x in open(os.path.join(out, "metrics.jsonl"))] == [1]
        assert torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)["epoch"] == 1
        assert winner_seed in (1, 2)


def test_resume_of_a_live_run_is_refused_naming_its_holder(tmp_path):
    out = str(tmp_path / "live")
    p = subprocess.Popen([sys.executable, "train_search.py", *TINY, "--epochs", "3", "--out", out], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        deadline = time.time() + 300
        while not os.path.exists(os.path.join(out, "log.txt")) and time.time() < deadline:
            time.sleep(0.05)
        assert p.poll() is None
        second = cli("search", "--resume", out)
        clean_error(second, "is in use by PID", str(p.pid))
        again = cli("search", *TINY, "--epochs", "3", "--out", out)
        assert again.returncode == 2 and "Traceback" not in again.stderr
    finally:
        assert p.wait(timeout=600) == 0
    assert [json.loads(x)["epoch"] for x in open(os.path.join(out, "metrics.jsonl"))] == [1, 2, 3]


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    out = str(tmp_path / "killed")
    p = subprocess.Popen([sys.executable, "train_search.py", *TINY, "--epochs", "3", "--out", out], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 300
    while not os.path.exists(os.path.join(out, "log.txt")) and time.time() < deadline:
        time.sleep(0.05)
    assert p.poll() is None
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = cli("search", "--resume", out)
    assert r.returncode == 0, r.stderr


# -- 2. resume validates before it writes --------------------------------------------------------------------


def test_a_checkpoint_from_another_run_is_refused_and_nothing_changes(tmp_path, finished):
    other = str(tmp_path / "other")
    assert cli("search", *TINY, "--epochs", "2", "--seed", "7", "--lr", "0.05", "--out", other).returncode == 0
    run = copy_run(finished, tmp_path / "run")
    os.replace(os.path.join(other, "checkpoint.pt"), os.path.join(run, "checkpoint.pt"))
    before = tree_hash(run)
    clean_error(cli("search", "--resume", run), "other options than", "config.json")
    assert tree_hash(run) == before


@pytest.mark.parametrize("forge", ["epoch -3", "epoch 99", "epoch missing", "epoch text", "model missing",
                                   "no layout"])
def test_a_forged_checkpoint_is_refused_and_nothing_changes(tmp_path, finished, forge):
    from darts.run.checkpoint import load_checkpoint, save_checkpoint

    run = copy_run(finished, tmp_path / "run")
    path = os.path.join(run, "checkpoint.pt")
    state = load_checkpoint(path)
    state.pop("format")
    what, how = forge.split()
    if how == "missing":
        state.pop(what)
    elif what == "no":
        state.pop("layout")
    else:
        state["epoch"] = {"-3": -3, "99": 99, "text": "2"}[how]
    save_checkpoint(state, path)
    if what == "no":  # save_checkpoint writes the layout: take it out again by hand
        raw = torch.load(path, weights_only=True)
        raw.pop("layout")
        torch.save(raw, path)
    before = tree_hash(run)
    clean_error(cli("search", "--resume", run))
    assert tree_hash(run) == before


@pytest.mark.parametrize("edit,fragment", [
    (lambda c: c.update(batch_size=0), "--batch-size must be positive"),
    (lambda c: c.update(lr="fast"), "--lr must be a number, got 'fast'"),
    (lambda c: c.pop("momentum"), "lacks momentum"),
    (lambda c: c.update(epochs=-1), "--epochs must be positive"),
    (lambda c: c.update(epochs=5), "other options than"),
    (lambda c: c.update(seed=2**70), "--seed must be <="),
    (lambda c: c.update(bogus=1), "unknown option --bogus"),
])
def test_a_hand_edited_config_is_validated_like_the_command_line(tmp_path, finished, edit, fragment):
    run = copy_run(finished, tmp_path / "run")
    path = os.path.join(run, "config.json")
    d = json.load(open(path))
    edit(d["config"])
    open(path, "w").write(json.dumps(d))
    before = tree_hash(run)
    clean_error(cli("search", "--resume", run), fragment)
    assert tree_hash(run) == before


# -- 3. damaged records are kept ------------------------------------------------------------------------------


@pytest.mark.parametrize("line", [0, 1])
def test_a_damaged_metrics_line_is_moved_aside_and_the_intact_records_kept(tmp_path, finished, line):
    run = copy_run(finished, tmp_path / "run")
    path = os.path.join(run, "metrics.jsonl")
    lines = open(path).read().splitlines(keepends=True)
    intact = [json.loads(x) for i, x in enumerate(lines) if i != line]
    lines[line] = lines[line][: len(lines[line]) // 2] + "\n"  # half a record
    damaged = "".join(lines)
    open(path, "w").write(damaged)
    p = cli("search", "--resume", run)
    assert p.returncode == 0, p.stderr
    assert "damaged" in p.stdout and "moved" in p.stdout
    assert [json.loads(x) for x in open(path)] == intact  # never empty, never truncated
    aside = [f for f in os.listdir(run) if f.startswith("metrics.jsonl.damaged-")]
    assert len(aside) == 1 and open(os.path.join(run, aside[0])).read() == damaged


# -- 4. no traceback for anything a user gives ----------------------------------------------------------------


def test_output_paths_the_file_system_refuses(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    clean_error(cli("search", *TINY, "--epochs", "1", "--out", str(blocker / "run")), "is a file")
    tb = tmp_path / "has_tb"
    tb.mkdir()
    (tb / "tb").write_text("not a directory")
    clean_error(cli("search", *TINY, "--epochs", "1", "--out", str(tb)), "tb", "is a file")
    assert sorted(os.listdir(tb)) == ["tb"]
    ro = """
        import errno, darts.run.rundir as rd
        def refuse(*a, **k):
            raise OSError(errno.EROFS, "Read-only file system")
        rd.atomic_write_text = refuse
    """
    out = tmp_path / "readonly"
    clean_error(cli("search", *TINY, "--epochs", "1", "--out", str(out), wrapper=ro), "read-only")
    assert not out.exists(), "a run that could not start left its directory"


def test_a_full_disk_while_appending_metrics_loses_nothing(tmp_path):
    full = """
        import errno, os, darts.run.rundir as rd
        class Disk:
            writes = 0
            def __getattr__(self, name):
                return getattr(os, name)
            def write(self, fd, data):
                Disk.writes += 1
                if Disk.writes == 2:  # the second epoch's record does not fit
                    os.write(fd, data[:10])
                    raise OSError(errno.ENOSPC, "No space left on device")
                return os.write(fd, data)
        rd.os = Disk()
    """
    out = str(tmp_path / "full")
    clean_error(cli("search", *TINY, "--epochs", "3", "--out", out, wrapper=full), "disk is full", "--resume")
    assert [json.loads(x)["epoch"] for x in open(os.path.join(out, "metrics.jsonl"))] == [1]  # no half line
    assert torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)["epoch"] == 1
    p = cli("search", "--resume", out)
    assert p.returncode == 0, p.stderr
    assert [json.loads(x)["epoch"] for x in open(os.path.join(out, "metrics.jsonl"))] == [1, 2, 3]


def test_a_corrupt_image_in_an_image_folder(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (8, 8), color=(i * 20, 0, 0)).save(root / c / f"{i}.png")
    data = (root / "b" / "3.png").read_bytes()
    (root / "b" / "3.png").write_bytes(data[: len(data) // 2])  # truncated
    clean_error(cli("search", *TINY, "--epochs", "1", "--batch-size", "2", "--dataset", "folder", "--data",
                    str(root), "--image-size", "8", "--num-workers", "0", "--out", str(tmp_path / "r")),
                "cannot read image", "3.png")
    clean_error(cli("search", *TINY, "--epochs", "1", "--batch-size", "2", "--dataset", "folder", "--data",
                    str(root), "--image-size", "8", "--num-workers", "1", "--out", str(tmp_path / "r2")),
                "cannot read image", "3.png")


@pytest.mark.parametrize("args,fragment", [
    (["search", "--seed", str(2**70)], "--seed: must be a 64-bit integer"),
    (["search", "--epochs", "9" * 5000], "must be a 64-bit integer"),
    (["search", "--train-portion", "1.5"], "--train-portion must be < 1"),
    (["search", "--lr", "nan"], "--lr must be a finite number"),
    (["search", "--momentum", "1"], "--momentum must be < 1"),
    (["retrain", "--arch", "DARTS_V2", "--label-smoothing", "2"], "--label-smoothing must be < 1"),
    (["retrain", "--arch", "DARTS_V2", "--drop-path-prob", "1"], "--drop-path-prob must be < 1"),
    (["search", "--kernels", "cuda-magic"], "unknown kernels setting"),
    (["search", "--method", "dart"], "did you mean darts"),
    (["search", "--space", "nb202"], "did you mean nb201"),
    (["search", "--nodes", "3", "--space", "nb201"], "--nodes is an option of --space darts"),
    (["serch"], "unknown command"),
])
def test_out_of_range_numbers_and_names(tmp_path, args, fragment):
    clean_error(cli(*args, "--out", str(tmp_path / "x")) if args[0] != "serch" else cli(*args), fragment)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("text,fragment", [
    ('{"normal": [["sep_conv_3x3", ' + "9" * 5000 + ']], "normal_concat": [2], "reduce": [], "reduce_concat": [2]}',
     "not a usable genotype"),
    ("Genotype(normal=[('sep_conv_3x3', " + "9" * 5000 + ")], normal_concat=[2], reduce=[], reduce_concat=[2])",
     "genotype text is not valid"),
    ("|none~" + "9" * 5000 + "|+|none~0|none~1|+|none~0|none~1|none~2|", "not of the form op~source_index"),
    ('{"format": "darts-genotype/1", "normal": [["sep_conv_3x3", 0, 2], ["skip_connect", 1]], '
     '"normal_concat": [2], "reduce": [], "reduce_concat": [2]}', "mixes"),
    ("\x00\xff binary", "cannot read genotype file"),
])
def test_absurd_genotype_files(tmp_path, text, fragment):
    path = tmp_path / "g.json"
    path.write_text(text, errors="surrogateescape") if "\x00" not in text else path.write_bytes(b"\x00\xff binary")
    clean_error(cli("retrain", "--genotype", str(path), "--out", str(tmp_path / "x")), fragment)


BAD_OPS = {
    "shape": "return nn.Conv2d(C, C + 1, 1)",
    "dtype": "return Cast()",
    "none": "return None",
    "tuple": "return Pair()",
    "not_module": "return lambda x: x",
    "raises": "raise RuntimeError('boom in the factory')",
    "forward_raises": "return Broken()",
}
EXPECT = {"shape": "returned shape (2, 5, 8, 8)", "dtype": "returned dtype torch.float64",
          "none": "must return a torch.nn.Module, got NoneType", "tuple": "returned tuple",
          "not_module": "must return a torch.nn.Module, got function", "raises": "its factory raised RuntimeError",
          "forward_raises": "raised ValueError"}


@pytest.mark.parametrize("kind", list(BAD_OPS))
def test_a_plugin_op_is_checked_where_it_enters(tmp_path, kind):
    plugin = tmp_path / "bad_ops.py"
    plugin.write_text(textwrap.dedent(f"""
        import torch.nn as nn
        from darts import register_op

        class Cast(nn.Module):
            def forward(self, x):
                return x.double()

        class Pair(nn.Module):
            def forward(self, x):
                return x, x

        class Broken(nn.Module):
            def forward(self, x):
                raise ValueError("broken forward")

        @register_op("bad_op")
        def bad_op(C, stride, affine):
            {BAD_OPS[kind]}
    """))
    p = cli("search", *TINY, "--epochs", "1", "--plugin", str(plugin), "--primitives", "none,skip_connect,bad_op",
            "--out", str(tmp_path / "x"))
    clean_error(p, "op 'bad_op'", str(plugin), EXPECT[kind])
    assert not (tmp_path / "x").exists()


def test_a_plugin_named_like_a_standard_module_is_loaded(tmp_path):
    plugin = tmp_path / "copy.py"
    plugin.write_text("import torch.nn as nn\nfrom darts import register_op\n\n@register_op('copy_op')\n"
                      "def copy_op(C, stride, affine):\n    return nn.Identity() if stride == 1 else "
                      "nn.AvgPool2d(2)\n")
    out = str(tmp_path / "r")
    p = cli("search", *TINY, "--epochs", "1", "--plugin", str(plugin), "--primitives", "none,copy_op,skip_connect",
            "--out", out)
    assert p.returncode == 0, p.stderr
    assert json.load(open(os.path.join(out, "genotype.json")))["primitives"] == ["none", "copy_op", "skip_connect"]


@pytest.mark.parametrize("args,warning", [
    (["--hvp", "exact"], "--hvp has no effect with --order first"),
    (["--arch-warmup", "5"], "no epoch updates α"),
    (["--data", "/tmp"], "--data has no effect with --dataset digits"),
])
def test_ineffective_options_get_a_one_line_warning(tmp_path, args, warning):
    p = cli("search", *TINY, "--epochs", "1", *args, "--out", str(tmp_path / "r"))
    assert p.returncode == 0, p.stderr
    assert sum(warning in ln for ln in p.stdout.splitlines()) == 1, p.stdout[-2000:]


def test_an_internal_error_is_loud_with_its_traceback_in_the_log(tmp_path):
    bug = """
        import darts.search_run as sr
        def broken(*a, **k):
            return 1 / 0
        sr.epoch_record = broken
    """
    out = tmp_path / "bug"
    p = cli("search", *TINY, "--epochs", "1", "--out", str(out), wrapper=bug)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "internal error ZeroDivisionError" in p.stderr and str(out / "log.txt") in p.stderr
    assert "Traceback" in (out / "log.txt").read_text() and "ZeroDivisionError" in (out / "log.txt").read_text()
    p = cli("search", *TINY, "--epochs", "1", "--out", str(tmp_path / "bug2"), "--debug", wrapper=bug)
    assert p.returncode == 1 and "Traceback" in p.stderr and "ZeroDivisionError" in p.stderr
