"""The package's shape: layers that import one way, no import cycle, `accelerate` only where a
process group is formed, modules under 500 lines and functions under 80, every module in
docs/architecture.md.

The order, lowest first (docs/architecture.md says what each holds). A module may import
from its own layer and the layers before it, never from a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGE = REPO / "ppi_dist"
LAYERS = [
    {"ppi_dist.errors"},
    {"ppi_dist.checks", "ppi_dist.files", "ppi_dist.tables"},
    {"ppi_dist.models"},
    {"ppi_dist.data"},
    {"ppi_dist.inference"},
    {"ppi_dist.evaluation"},
    {"ppi_dist.hub"},
    {"ppi_dist.training"},
    {"ppi_dist.cli"},
]
# The older `python -m ppi_dist.predict`-style spellings and the headline
# `accelerate launch ppi_dist/train.py`: entry points above the command line.
ENTRY_POINTS = {"train", "predict", "evaluate", "explain", "report", "split", "audit", "push"}
ENTRY_POINTS |= {"synthetic"}
ENTRY_POINTS |= {"model"}
# Heavy imports a function may take late: `datasets` (seconds, only for hf:// and dataset
# names), scikit-learn (only the synthetic task's composition baseline) and the optional
# partitioners of the `split` extra (kahip, pymetis: imported where they are used, so the
# split's random method and every other command run without them).
LATE_IMPORTS = ("datasets", "sklearn", "kahip", "pymetis")
# Where a process group is formed or used: Accelerate is imported there only.
ACCELERATE = ("ppi_dist.training", "ppi_dist.cli")


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(module imported, at module level) for every import statement of a file."""
    tree = ast.parse(path.read_text())
    late = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            late.update(id(inner) for inner in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) not in late) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, id(node) not in late))
            # `from ppi_dist.models import attention` imports the module ppi_dist.models.attention
            found += [(f"{node.module}.{alias.name}", id(node) not in late) for alias in node.names]
    return found


def layer_of(module: str) -> int | None:
    """The layer index of a ppi_dist module (None: the package itself or an entry point)."""
    for index, layer in enumerate(LAYERS):
        if any(module == top or module.startswith(top + ".") for top in layer):
            return index
    return None


def internal_edges() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        edges[name] = {imported for imported, _ in imports_of(path) if imported in known}
        edges[name].discard(name)
    return edges


def wrong_way_imports(edges: dict[str, set[str]]) -> list[str]:
    """Every import of a later layer (or of an entry point) by a layered module."""
    wrong = []
    for name, imported in sorted(edges.items()):
        here = layer_of(name)
        if here is None:
            continue
        for other in sorted(imported):
            there = layer_of(other)
            if there is None or there > here:
                wrong.append(f"{name} imports {other}")
    return wrong


def a_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """Some import cycle of the graph, as the modules along it; None when there is none."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return [*path, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node, [])):
            return cycle
    return None


def test_layers_import_one_way():
    assert not wrong_way_imports(internal_edges())


def test_no_import_cycle():
    assert a_cycle(internal_edges()) is None


def test_the_checks_catch_a_wrong_way_import_and_a_cycle():
    """The two checks above can fail."""
    upward = {"ppi_dist.data.pairs": {"ppi_dist.training.config"}}
    assert wrong_way_imports(upward) == ["ppi_dist.data.pairs imports ppi_dist.training.config"]
    loop = {"ppi_dist.data.pairs": {"ppi_dist.data.batching"}}
    loop["ppi_dist.data.batching"] = {"ppi_dist.data.pairs"}
    assert a_cycle(loop) == [
        "ppi_dist.data.batching",
        "ppi_dist.data.pairs",
        "ppi_dist.data.batching",
    ]


def test_entry_points_only_start_a_command():
    for name in ENTRY_POINTS:
        imported = internal_edges()[f"ppi_dist.{name}"]
        assert imported and all(m.startswith("ppi_dist.cli.") for m in imported), (name, imported)
    known = {name.removeprefix("ppi_dist.") for name in modules() if name.count(".") == 1}
    top_level = {name for name in known if (PACKAGE / f"{name}.py").is_file()}
    assert top_level == ENTRY_POINTS | {"errors", "checks", "files", "tables"}


def test_late_imports_are_only_the_heavy_optional_ones():
    late = [
        f"{name}: {imported}"
        for name, path in modules().items()
        for imported, at_top in imports_of(path)
        if not at_top and not imported.startswith(LATE_IMPORTS)
    ]
    assert not late, late


def test_accelerate_only_where_a_process_group_is_formed():
    users = {
        name
        for name, path in modules().items()
        if any(imported.split(".")[0] == "accelerate" for imported, _ in imports_of(path))
    }
    assert users and all(name.startswith(ACCELERATE) for name in users), sorted(users)


def test_every_module_is_short_and_named_in_the_architecture_notes():
    notes = (REPO / "docs" / "architecture.md").read_text()
    for path in modules().values():
        lines = len(path.read_text().splitlines())
        assert lines <= 500, f"{path.relative_to(REPO)}: {lines} lines"
        if path.name != "__init__.py":
            shown = path.relative_to(PACKAGE).as_posix()
            assert f"`{shown}`" in notes, f"docs/architecture.md does not name {shown}"


FUNCTION_LINES = 80  # ruff holds the package to 15 branches (C901) and 8 parameters (PLR0913)


def long_functions(path: Path, limit: int = FUNCTION_LINES) -> list[str]:
    """Every function or method of a file over `limit` lines (its def line to its last)."""
    tree = ast.parse(path.read_text())
    return [
        f"{path.name}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > limit
    ]


def test_every_function_is_short():
    long = [found for path in modules().values() for found in long_functions(path)]
    assert not long, long


def test_the_function_check_catches_a_long_one(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(FUNCTION_LINES))
    path = tmp_path / "long.py"
    path.write_text(f"def short():\n    pass\n\n\ndef long():\n{body}")
    assert long_functions(path) == [f"long.py:5 long: {FUNCTION_LINES + 1} lines"]
