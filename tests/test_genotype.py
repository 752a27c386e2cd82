"""Genotype formats (JSON, the original log text) and the DARTS discretizer."""
import json

import pytest
import torch

from darts.errors import GenotypeError
from darts.genotype import Genotype, derive_genotype, load_genotype, num_edges, parse_genotype_text
from darts.ops import DARTS_PRIMITIVES

DARTS_V2_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
)


def test_log_text_parses_with_range_concat():
    g = parse_genotype_text(DARTS_V2_TEXT)
    assert g.normal[7] == ("dil_conv_3x3", 2)
    assert g.reduce_concat == (2, 3, 4, 5)
    assert g.steps == 4


def test_json_and_text_round_trips(tmp_path):
    g = parse_genotype_text(DARTS_V2_TEXT)
    g = Genotype(g.normal, g.normal_concat, g.reduce, g.reduce_concat, DARTS_PRIMITIVES)
    path = tmp_path / "g.json"
    g.save(str(path))
    back = load_genotype(str(path))
    assert back == g and back.primitives == DARTS_PRIMITIVES
    assert parse_genotype_text(str(g)) == g
    (tmp_path / "g.txt").write_text(str(g))
    assert load_genotype(str(tmp_path / "g.txt")) == g


@pytest.mark.parametrize("text", [
    "Genotype(normal=__import__('os').system('echo pwned'), normal_concat=[2], reduce=[], reduce_concat=[2])",
    "exec('1')",
    "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat=[2], reduce=[('skip_connect', 0), "
    "('skip_connect', 1)], reduce_concat=[1+1])",
    "Genotype(**{'normal': []})",
])
def test_code_in_genotype_text_is_rejected(text, capfd):
    with pytest.raises(GenotypeError):
        parse_genotype_text(text)
    assert "pwned" not in capfd.readouterr().out


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("reduce"), "missing"),
    (lambda d: d["normal"].pop(), "two"),
    (lambda d: d["normal"].__setitem__(2, ["sep_conv_3x3", 3]), "reads node 3"),
    (lambda d: d["normal"].__setitem__(0, ["conv_9x9", 0]), "unknown op"),
    (lambda d: d["normal"].__setitem__(0, "sep_conv_3x3"), "pair"),
    (lambda d: d.__setitem__("normal_concat", [2, 9]), "does not exist"),
    (lambda d: d.__setitem__("reduce_concat", "2345"), "list"),
    (lambda d: d.__setitem__("extra", 1), "unknown field"),
])
def test_malformed_json_is_a_clear_error(mutate, message, tmp_path):
    d = parse_genotype_text(DARTS_V2_TEXT).to_dict()
    mutate(d)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(GenotypeError, match=message):
        load_genotype(str(path))


def test_not_json_and_missing_file(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(GenotypeError, match="not valid JSON"):
        load_genotype(str(tmp_path / "x.json"))
    with pytest.raises(GenotypeError, match="does not exist"):
        load_genotype(str(tmp_path / "nope.json"))


def test_discretizer_on_hand_written_weights():
    # Search space with `none` deliberately NOT in column 0, so a fixed-index exclusion would fail.
    prims = ("sep_conv_3x3", "skip_connect", "none", "max_pool_3x3")
    steps = 2
    W = torch.zeros(num_edges(steps), len(prims))  # edges: node2 <- {0,1}; node3 <- {0,1,2}
    W[0] = torch.tensor([0.1, 0.2, 0.9, 0.0])   # 0->2: none strongest, then skip 0.2
    W[1] = torch.tensor([0.5, 0.1, 0.0, 0.3])   # 1->2: sep 0.5
    W[2] = torch.tensor([0.05, 0.0, 0.95, 0.0])  # 0->3: almost only none: weakest edge after exclusion
    W[3] = torch.tensor([0.0, 0.0, 0.2, 0.6])   # 1->3: max_pool 0.6
    W[4] = torch.tensor([0.3, 0.3, 0.1, 0.0])   # 2->3: tie sep/skip -> first column (sep)
    R = W.flip(0)
    g = derive_genotype(W, R, prims, steps=steps)
    assert g.normal == (("sep_conv_3x3", 1), ("skip_connect", 0), ("max_pool_3x3", 1), ("sep_conv_3x3", 2))
    assert g.normal_concat == (2, 3)
    assert all(op != "none" for op, _ in g.normal + g.reduce)
    g.validate()


def test_max_skip_replaces_weakest_skips():
    prims = ("none", "skip_connect", "sep_conv_3x3")
    W = torch.tensor([[0.0, 0.9, 0.1], [0.0, 0.8, 0.2], [0.0, 0.7, 0.3], [0.0, 0.6, 0.1], [0.0, 0.1, 0.5]])
    g = derive_genotype(W, W, prims, steps=2)
    assert sum(op == "skip_connect" for op, _ in g.normal) == 4
    g1 = derive_genotype(W, W, prims, steps=2, max_skip=1)
    assert sum(op == "skip_connect" for op, _ in g1.normal) == 1
    assert ("skip_connect", 0) in g1.normal  # the strongest skip survives
    assert g1.normal == (("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2), ("sep_conv_3x3", 0))
    assert g1.reduce == g.reduce  # only the normal cell is limited


def test_wrong_weight_shape_is_an_error():
    with pytest.raises(GenotypeError, match="shape"):
        derive_genotype(torch.zeros(13, 8), torch.zeros(14, 8), DARTS_PRIMITIVES, steps=4)
