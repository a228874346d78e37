"""The shape of the code, checked: demos stand on the SDK only, declarations stay light, no import
circles. Read from the source (ast), so a lazy import inside a function counts too."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from api import ROOT

DEMO_PACKAGES = sorted(p.parent for p in (ROOT / "api" / "demos").glob("*/__init__.py")) + [ROOT / "tests/demos/dummy"]
HEAVY = ("torch", "torchvision", "ultralytics", "cv2", "numpy", "sklearn", "skimage", "onnx", "onnxruntime",
         "openvino", "scipy")


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every module `path` imports, absolute, anywhere in the file, with its line."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_of(path) if path.name == "__init__.py" else module_of(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import name` may import the submodule pkg.name: count both
            found += [(base, node.lineno)] + [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def project_modules() -> dict[str, Path]:
    files = [*(ROOT / "api").rglob("*.py"), *(ROOT / "tests/demos").rglob("*.py")]
    return {module_of(p): p for p in files}


@pytest.mark.parametrize("package", DEMO_PACKAGES, ids=lambda p: p.name)
def test_demos_import_nothing_of_the_platform_but_the_sdk(package: Path):
    own = module_of(package / "__init__.py")
    offending = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for path in sorted(package.rglob("*.py"))
                 for name, line in imports_of(path)
                 if name.split(".")[0] == "api" and name != "api.sdk" and not name.startswith("api.sdk.")
                 and not (name == own or name.startswith(own + "."))]
    assert not offending, "\n".join(offending)


def test_no_import_circles_in_the_code_base():
    modules = project_modules()
    graph = {name: sorted({target for target, _ in imports_of(path) if target in modules and target != name})
             for name, path in modules.items()}
    # a package's __init__ re-exporting its submodules is not a circle with them: drop package -> child edges
    graph = {name: [t for t in targets if not t.startswith(name + ".")] for name, targets in graph.items()}
    cycles = _cycles(graph)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, []):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []


@pytest.mark.parametrize("package", DEMO_PACKAGES, ids=lambda p: p.name)
def test_a_demo_declaration_imports_no_heavy_library(package: Path):
    """The API process imports every installed demo's `__init__`: it must stay free of the libraries
    its work needs (they live in the demo's worker side, imported by load_model/run)."""
    module = module_of(package / "__init__.py")
    code = (f"import sys, {module}; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"{module} imports {out.stdout.strip()}"


def test_demo_code_has_no_lazy_imports_but_the_worker_entry():
    """Declaration and work are apart, so a demo needs no function-local imports to keep torch out
    of the API: at most its `__init__`'s load_model/run reach into the worker side, once each."""
    lazy = []
    for package in DEMO_PACKAGES:
        for path in sorted(package.rglob("*.py")):
            tree = ast.parse(path.read_text())
            for func in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
                for node in ast.walk(func):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        entry = path.name == "__init__.py" and func.name in ("load_model", "run")
                        if not entry:
                            lazy.append(f"{path.relative_to(ROOT)}:{node.lineno} in {func.name}()")
    assert not lazy, "\n".join(lazy)
