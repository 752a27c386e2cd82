"""Property test: any JSON fed to the genotype loader either loads a valid genotype or raises GenotypeError."""
import json

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
genotype_like = st.fixed_dictionaries(
    {"normal": cell, "normal_concat": concat, "reduce": cell, "reduce_concat": concat},
    optional={"primitives": st.one_of(st.lists(st.sampled_from(["none", "skip_connect", "sep_conv_3x3"])), any_json),
              "format": st.sampled_from(["darts-genotype/1", "other"]), "junk": any_json})


def _check(loader):
    try:
        g = loader()
    except GenotypeError:
        return
    assert isinstance(g, Genotype)
    g.validate()  # whatever loads is valid


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.one_of(genotype_like, any_json))
def test_random_json_loads_or_raises_genotype_error(doc, tmp_path):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc))
    _check(lambda: load_genotype(str(path)))


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.text(max_size=80), st.builds(lambda d: "Genotype(" + d + ")", st.text(max_size=60))))
def test_random_text_parses_or_raises_genotype_error(text):
    _check(lambda: parse_genotype_text(text))


def test_pathological_inputs(tmp_path):
    for text in ["(" * 300 + ")" * 300, "Genotype(\x00)", "[" * 100000]:
        _check(lambda: parse_genotype_text(text))
    path = tmp_path / "deep.json"
    path.write_text("[" * 100000 + "]" * 100000)
    _check(lambda: load_genotype(str(path)))
    path.write_bytes(b"\xff\xfe\x00binary")
    _check(lambda: load_genotype(str(path)))
