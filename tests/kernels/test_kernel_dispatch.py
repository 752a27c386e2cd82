"""``--kernels`` dispatch: auto/reference/triton resolution, the error where Triton cannot run, lazy triton import."""
import os
import subprocess
import sys

import pytest
import torch

from darts.dispatch import KERNELS, get_cell_impl, get_impl, kernel_choices, register_kernel, resolve_kernels
from darts.errors import ConfigError, DartsError, DuplicateNameError
from darts.ops import DARTS_PRIMITIVES
from darts.spaces import Supernet
from kernels.reference import cell_reference, mixed_op_reference

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_choices_and_resolution_on_cpu():
    assert kernel_choices()[:4] == ("auto", "reference", "fused_cpu", "triton")
    assert resolve_kernels("auto", torch.device("cpu")) == "fused_cpu"
    assert resolve_kernels("reference", torch.device("cpu")) == "reference"
    assert get_impl("reference") is mixed_op_reference
    assert get_cell_impl("reference") is cell_reference


def test_a_kernel_setting_is_validated_where_the_run_is_configured():
    from darts.config import resolve_search

    with pytest.raises(ConfigError, match="unknown kernels setting 'cudnn'"):
        resolve_search({"kernels": "cudnn"})


def test_triton_without_cuda_fails_clearly(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: triton can run")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ConfigError, match="triton") as e:
        resolve_kernels("triton", torch.device("cpu"))
    assert isinstance(e.value, DartsError)
    with pytest.raises(ConfigError):
        Supernet(4, 5, 3, DARTS_PRIMITIVES, steps=2, multiplier=2, kernels="triton").set_kernels("triton", "cpu")


def test_triton_under_interpreter_resolves(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_kernels("triton", torch.device("cpu")) == "triton"


def test_unknown_setting_is_a_config_error():
    with pytest.raises(ConfigError, match="choose from"):
        resolve_kernels("cudnn", torch.device("cpu"))


def test_a_registered_kernel_is_chosen_by_auto_where_it_ranks_first(monkeypatch):
    spec = register_kernel("test_cpu_first", "kernels.reference", "mixed_op_reference", "cell_reference",
                           auto_for=("cpu",), priority=99)
    try:
        assert resolve_kernels("auto", "cpu") == "test_cpu_first"
        assert "test_cpu_first" in kernel_choices()
        with pytest.raises(DuplicateNameError):
            register_kernel("test_cpu_first", "kernels.reference")
    finally:
        KERNELS._entries.pop(spec.name)
    assert resolve_kernels("auto", "cpu") == "fused_cpu"


def test_cpu_path_never_imports_triton():
    code = ("import sys, torch; from darts.spaces import Supernet; from darts.ops import DARTS_PRIMITIVES; "
            "m = Supernet(4, 5, 3, DARTS_PRIMITIVES, steps=2, multiplier=2); m(torch.randn(2, 3, 8, 8)).sum()"
            ".backward(); assert m.set_kernels('auto') == 'fused_cpu'; assert 'triton' not in sys.modules, 'imported'")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["OMP_NUM_THREADS"] = "1"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_kernels_never_import_darts():
    """The kernels read a cell through kernels.interface only: importing every kernel module imports no darts."""
    code = ("import sys, kernels, kernels.interface, kernels.reference, kernels.fused_cpu, kernels.bn_sum, "
            "kernels.sepconv, kernels.dwpw, kernels.dwconv, kernels.cpu_ext; "
            "bad = [m for m in sys.modules if m == 'darts' or m.startswith('darts.')]; assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
