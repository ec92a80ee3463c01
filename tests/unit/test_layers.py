"""The one-way data flow of STYLE.md, checked on the source with the ast module.

kg_builders never imports graph_rec; inside each package a module imports only its own layer or
the layers before it. Every layer named here must have files, so the test cannot pass vacuously.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (package, layers in data-flow order); a layer is a module or a sub-package
LAYERS = {
    "kg_builders": [
        ["__init__", "errors", "_optional", "_files", "_batches", "tables", "fragment"],
        ["sources"],
        ["split"],
        ["builders"],
        ["graph"],
        ["export"],
    ],
    # eval sits below training: the trainer validates with the evaluator, metrics never train
    "graph_rec": [
        ["__init__", "errors"],
        ["distributed"],
        ["data"],
        ["models"],
        ["eval"],
        ["training"],
        ["runs"],
        ["explore"],
        ["recommender", "inference"],
        ["cli", "cli_neo4j"],
    ],
}


def _layer_of(package: str, module: str) -> int:
    head = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS[package]):
        if head in names:
            return i
    raise AssertionError(f"{module} is in no layer of {package}: add it to LAYERS")


def _modules(package: str) -> list[tuple[str, Path]]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1] if len(parts) > 2 else parts
        out.append((".".join(parts) if parts[-1] != "__init__" else package, path))
    return out


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_every_named_layer_has_files(package: str) -> None:
    for names in LAYERS[package]:
        for name in names:
            if name == "__init__":
                assert (ROOT / package / "__init__.py").is_file()
                continue
            assert (ROOT / package / f"{name}.py").is_file() or any((ROOT / package / name).glob("*.py")), (
                f"layer {package}.{name} has no files"
            )


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_flow_one_way(package: str) -> None:
    bad = []
    for module, path in _modules(package):
        mine = _layer_of(package, module)
        for imp in _imports(path):
            top = imp.split(".")[0]
            if package == "kg_builders" and top == "graph_rec":
                bad.append(f"{module} imports {imp}: kg_builders must never import graph_rec")
            if top == package and "." in imp and _layer_of(package, imp) > mine:
                bad.append(f"{module} imports {imp}, a later layer")
    assert not bad, "\n".join(bad)


def test_the_check_detects_a_violation(tmp_path) -> None:
    src = tmp_path / "m.py"
    src.write_text("from kg_builders.export.hetero import to_hetero_data\nimport graph_rec.cli\n")
    assert _imports(src) == ["kg_builders.export.hetero", "graph_rec.cli"]
    assert _layer_of("kg_builders", "kg_builders.export.hetero") > _layer_of("kg_builders", "kg_builders.graph")
