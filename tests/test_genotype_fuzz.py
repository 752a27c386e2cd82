"""Property test: any JSON fed to the genotype loader either loads a valid genotype or raises GenotypeError; the
generated inputs include valid genotypes, and some of every run must load (or the test would test nothing)."""
import json
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darts.errors import GenotypeError
from darts.genotype import Genotype, load_genotype, parse_genotype_text

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 8), st.floats(allow_nan=False), st.sampled_from(
    ["sep_conv_3x3", "skip_connect", "none", "max_pool_3x3", "bogus", ""]))
any_json = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=6),
                                                           st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                        max_leaves=20)
pair = st.one_of(st.tuples(st.sampled_from(["sep_conv_3x3", "skip_connect", "none", "dil_conv_5x5", "nope"]),
                           st.integers(-1, 6)).map(list), any_json)
cell = st.lists(pair, max_size=10)
concat = st.one_of(st.lists(st.integers(-1, 7), max_size=6), any_json)
VALID_OPS = ["sep_conv_3x3", "skip_connect", "max_pool_3x3", "dil_conv_5x5"]


@st.composite
def valid_genotype(draw):
    """A genotype that must load: two (op, input) pairs per node, inputs earlier nodes, a concat of real nodes."""
    doc = {}
    for cell in ("normal", "reduce"):
        steps = draw(st.integers(1, 4))
        doc[cell] = [[draw(st.sampled_from(VALID_OPS)), draw(st.integers(0, 1 + i))] for i in range(steps)
                     for _ in range(2)]
        doc[cell + "_concat"] = sorted(draw(st.sets(st.integers(0, steps + 1), min_size=1)))
    return doc


genotype_like = st.fixed_dictionaries(
    {"normal": cell, "normal_concat": concat, "reduce": cell, "reduce_concat": concat},
    optional={"primitives": st.one_of(st.lists(st.sampled_from(["none", "skip_connect", "sep_conv_3x3"])), any_json),
              "format": st.sampled_from(["darts-genotype/1", "other"]), "junk": any_json})


def _check(loader) -> bool:
    """True if a genotype loaded (and it is valid), False if the loader refused it with a GenotypeError."""
    try:
        g = loader()
    except GenotypeError:
        return False
    assert isinstance(g, Genotype)
    g.validate()  # whatever loads is valid
    return True


def test_random_json_loads_or_raises_genotype_error():
    loaded = []

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(doc=st.one_of(valid_genotype(), genotype_like, any_json))
    def check(doc):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "g.json")
            with open(path, "w") as f:
                f.write(json.dumps(doc))
            loaded.append(_check(lambda: load_genotype(path)))

    check()
    assert sum(loaded) >= 20, f"only {sum(loaded)} of {len(loaded)} generated inputs loaded"
    assert len(loaded) - sum(loaded) >= 20, "the generator made too few bad inputs to test the refusals"


def test_random_text_parses_or_raises_genotype_error():
    loaded = []

    @settings(max_examples=200, deadline=None)
    @given(text=st.one_of(st.text(max_size=80), st.builds(lambda d: "Genotype(" + d + ")", st.text(max_size=60)),
                          valid_genotype().map(lambda d: str(Genotype.from_dict(d)))))
    def check(text):
        loaded.append(_check(lambda: parse_genotype_text(text)))

    check()
    assert sum(loaded) >= 10, f"only {sum(loaded)} of {len(loaded)} generated texts parsed"


def test_pathological_inputs(tmp_path):
    for text in ["(" * 300 + ")" * 300, "Genotype(\x00)", "[" * 100000]:
        _check(lambda: parse_genotype_text(text))
    path = tmp_path / "deep.json"
    path.write_text("[" * 100000 + "]" * 100000)
    _check(lambda: load_genotype(str(path)))
    path.write_bytes(b"\xff\xfe\x00binary")
    _check(lambda: load_genotype(str(path)))
