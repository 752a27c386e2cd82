"""Drawing genotypes: files written by both backends, the graph they draw, and the command line."""
from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import sys

import pytest

import darts.plot as plot
from darts.errors import DartsError
from darts.plot import main, plot_genotype
from darts.zoo import get_genotype

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGES = ["normal.png", "normal.svg", "reduce.png", "reduce.svg"]


def _check_images(out_dir, prefix=""):
    for name in IMAGES:
        path = os.path.join(out_dir, prefix + name)
        assert os.path.isfile(path), path
        with open(path, "rb") as f:
            data = f.read()
        if name.endswith(".png"):
            assert data.startswith(PNG_MAGIC)
        else:
            assert b"<svg" in data


HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
needs_matplotlib = pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="matplotlib is not installed")


@needs_matplotlib
@pytest.mark.parametrize("name", ["DARTS_V2", "NASNet"])  # NASNet: 5 nodes, a concat that skips nodes
def test_matplotlib_backend_writes_png_and_svg(tmp_path, name):
    written = plot_genotype(get_genotype(name), str(tmp_path), name_prefix="x_", backend="matplotlib")
    assert sorted(os.path.basename(p) for p in written) == sorted("x_" + n for n in IMAGES)
    _check_images(str(tmp_path), "x_")


def test_auto_backend_writes_the_four_files(tmp_path):
    if shutil.which("dot") is None and not HAVE_MATPLOTLIB:
        pytest.skip("neither graphviz nor matplotlib is installed")
    plot_genotype(get_genotype("PC_DARTS_cifar"), str(tmp_path / "new" / "dir"))
    _check_images(str(tmp_path / "new" / "dir"))


def test_graph_has_every_edge_and_the_concat():
    g = get_genotype("AmoebaNet")
    nodes, op_edges, out_edges = plot._cell_graph(g.edges("reduce"), g.reduce_concat)
    assert nodes == ["c_{k-2}", "c_{k-1}", "0", "1", "2", "3", "4", "c_{k}"]
    assert op_edges[0] == ("c_{k-2}", "0", "avg_pool_3x3")
    assert op_edges[9] == ("3", "4", "sep_conv_3x3")  # ('sep_conv_3x3', 5): node 5 is intermediate node 3
    assert len(op_edges) == 10
    assert out_edges == [("1", "c_{k}"), ("2", "c_{k}"), ("4", "c_{k}")]  # reduce_concat [3, 4, 6]


def _fake_dot(tmp_path):
    """A stand-in for graphviz: records its argv and writes a minimal file of the requested format."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "dot"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{tmp_path}/calls.txt"\n'
        'case "$1" in -Tpng) printf "\\211PNG\\r\\n\\032\\nfake" > "$3";; -Tsvg) echo "<svg/>" > "$3";; esac\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


@pytest.mark.skipif(sys.platform == "win32", reason="uses a shell script as a fake dot")
def test_dot_backend_writes_a_dot_file_and_calls_dot_per_format(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{_fake_dot(tmp_path)}{os.pathsep}{os.environ.get('PATH', '')}")
    out = tmp_path / "out"
    written = plot_genotype(get_genotype("DARTS_V2"), str(out), backend="dot")
    _check_images(str(out))
    source = (out / "normal.dot").read_text()
    assert source.count('[label="') == 8  # one labelled edge per op
    assert '"c_{k-2}" -> "0" [label="sep_conv_3x3"]' in source
    assert '"0" -> "3" [label="dil_conv_3x3"]' in source
    assert source.count("-> \"c_{k}\"") == 4
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert calls[0] == f"-Tpng -o {out / 'normal.png'} {out / 'normal.dot'}"
    assert len(calls) == 4 and len(written) == 6


def test_without_any_backend_the_error_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(plot.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail
    with pytest.raises(DartsError, match="pip install matplotlib"):
        plot_genotype(get_genotype("DARTS_V2"), str(tmp_path))
    with pytest.raises(DartsError, match="not on PATH"):
        plot_genotype(get_genotype("DARTS_V2"), str(tmp_path), backend="dot")


# ---------------------------------------------------------------------------------------------------------
# Command line


@needs_matplotlib
def test_cli_reads_json_log_text_and_zoo_names(tmp_path, capsys):
    g = get_genotype("PDARTS")
    json_file = tmp_path / "g.json"
    json_file.write_text(g.to_json())
    log_file = tmp_path / "g.txt"
    log_file.write_text(str(g) + "\n")
    for spec, out in ((str(json_file), "a"), (str(log_file), "b"), ("pdarts", "c")):
        assert main([spec, "--out", str(tmp_path / out), "--backend", "matplotlib"]) == 0
        _check_images(str(tmp_path / out))
    assert capsys.readouterr().out.count(".png") == 6


def test_cli_errors_and_help(tmp_path, capsys):
    assert main(["darts_v3", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "neither a genotype file nor a published cell" in err and "DARTS_V2" in err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main([str(bad), "--out", str(tmp_path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "GENOTYPE_OR_NAME" in capsys.readouterr().out
