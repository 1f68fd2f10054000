"""The layout of ARCHITECTURE.md, checked: the import-linter contracts of pyproject.toml (floors,
no cycles, torch-free runtime, independent FE hosts) with no exception list, imports inside
functions only where they keep an optional dependency optional, and the registries resolve."""
from __future__ import annotations

import ast
import importlib
import importlib.metadata
import subprocess
import sys
import tomllib
from functools import lru_cache
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("constitutive", "export", "fem_bridge", "fortran_umat", "benchmarks")
# third-party packages that are not core dependencies of neumat (extras or separate environments)
OPTIONAL = {"torch", "optuna", "matplotlib", "tqdm", "skfem", "dask", "distributed", "dolfinx", "ufl",
            "basix", "mpi4py", "petsc4py", "dolfinx_external_operator", "gmsh"}


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def test_import_contracts_hold(capsys):
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0, capsys.readouterr().out


def test_contracts_have_no_exception_list():
    config = _config()
    assert config["root_packages"] == list(PACKAGES)
    types = {c["type"] for c in config["contracts"]}
    assert {"layers", "acyclic_siblings", "independence", "forbidden"} <= types
    for contract in config["contracts"]:
        assert "ignore_imports" not in contract, contract["name"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")
    assert layers["layers"] == list(reversed(PACKAGES))


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _resolve(module: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level == 0:
        return [node.module]
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    stem = ".".join(base + ([node.module] if node.module else []))
    return [stem] if node.module else [f"{stem}.{a.name}" for a in node.names]


def _top_level_imports(module: str, path: Path) -> list[str]:
    """Imports executed when the module is imported (module body, also under if/try)."""
    tree = ast.parse(path.read_text())
    found = []
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found += _resolve(module, node, path.name == "__init__.py")
        elif isinstance(node, (ast.If, ast.Try)):
            stack += node.body + node.orelse + getattr(node, "handlers", []) + getattr(node, "finalbody", [])
        elif isinstance(node, ast.ExceptHandler):
            stack += node.body
    return found


@lru_cache(maxsize=None)
def _needs_optional(module: str) -> bool:
    """True when importing ``module`` imports an optional third-party package."""
    top = module.split(".")[0]
    if top in OPTIONAL:
        return True
    modules = _modules()
    if top not in PACKAGES:
        return False
    while module not in modules and "." in module:   # 'pkg.mod.name' -> 'pkg.mod'
        module = module.rsplit(".", 1)[0]
    if module not in modules:
        return False
    return any(_needs_optional(m) for m in _top_level_imports(module, modules[module])
               if m != module and not m.startswith("__future__"))


def _function_imports(path: Path):
    tree = ast.parse(path.read_text())
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    yield node


def test_imports_inside_functions_only_keep_optional_dependencies_optional():
    bad = []
    for module, path in sorted(_modules().items()):
        lines = path.read_text().splitlines()
        for node in _function_imports(path):
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            targets = _resolve(module, node, path.name == "__init__.py")
            if not all(_needs_optional(t) for t in targets):
                bad.append(f"{where}: {', '.join(targets)} is not optional; import it at the top")
            elif "# optional:" not in lines[node.lineno - 1]:
                bad.append(f"{where}: lazy import without a '# optional: reason' comment")
    assert not bad, "\n".join(bad)


def test_the_policy_check_finds_a_needless_lazy_import(tmp_path):
    """The check above can fail: a function importing numpy is reported."""
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    import numpy  # optional: no\n    return numpy\n")
    targets = [t for node in _function_imports(mod) for t in _resolve("m", node, False)]
    assert targets == ["numpy"] and not _needs_optional("numpy")
    assert _needs_optional("torch") and _needs_optional("constitutive.training")


@pytest.mark.parametrize("group", ["neumat.commands", "neumat.backends"])
def test_every_registered_entry_point_loads(group):
    eps = list(importlib.metadata.entry_points(group=group))
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][group]
    assert sorted(ep.name for ep in eps) == sorted(declared), "reinstall: pip install -e ."
    for ep in eps:
        assert callable(ep.load()), ep


def test_backend_kinds_come_from_the_registry():
    from fem_bridge.backends import backend_kinds
    assert set(backend_kinds()) == {"onnxruntime", "numpy", "compiled"}


def test_readme_import_paths_work():
    fem_bridge = importlib.import_module("fem_bridge")
    for name in ("Elasticity", "conventions", "integrate", "load_backend", "umat", "UmatMaterial"):
        assert hasattr(fem_bridge, name), name
    # the runtime faces import without torch
    code = "import sys, fem_bridge, export, fortran_umat; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
