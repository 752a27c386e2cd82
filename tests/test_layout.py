"""The package's shape: no import cycles anywhere (module level or inside functions), the kernels independent of
darts, and every part found where its folder says."""
import ast
import os

import pytest

from tests.conftest import ROOT


def _modules(package: str) -> dict[str, str]:
    """Dotted module name -> file, for every .py under ``package``."""
    out = {}
    base = os.path.join(ROOT, package)
    for folder, _, files in os.walk(base):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), ROOT)[:-3].replace(os.sep, ".")
                out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(folder, f)
    return out


def _imports(name: str, path: str, known: dict) -> set[str]:
    """Every project module ``name`` imports, at module level or inside a function."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    is_pkg = path.endswith("__init__.py")
    out = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".")
                base = parts if is_pkg else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" for a in node.names] + [mod]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for t in targets:
            if t in known:
                out.add(t)
                break
    out.discard(name)
    return out


def test_no_import_cycles():
    known = {**_modules("darts"), **_modules("kernels")}
    graph = {m: _imports(m, p, known) for m, p in known.items()}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not any(m.startswith("darts") for k in graph if k.startswith("kernels") for m in graph[k])


@pytest.mark.parametrize("kind,folder", [("methods", "darts/methods"), ("spaces", "darts/spaces")])
def test_each_registered_part_lives_in_its_folder(kind, folder):
    import darts

    registry = {"methods": darts.METHODS, "spaces": darts.SPACES}[kind]
    for name in registry:
        origin = registry.origin(name)
        assert origin.startswith(folder.replace("/", ".")), (name, origin)


def test_the_triton_interpreter_is_set_for_the_kernel_tests_only():
    from tests.conftest import GIVEN_TRITON_INTERPRET

    assert os.environ.get("TRITON_INTERPRET") == GIVEN_TRITON_INTERPRET
