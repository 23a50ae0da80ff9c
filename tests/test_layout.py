"""The package's shape: imports point one way, modules and functions stay small, the fast-path switch has one
reader, and the installed ``drnn`` starts without torch."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import dilated_rnn

ROOT = Path(dilated_rnn.__file__).parent


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Each module's imports of the package's modules, at module level or inside functions alike. ``from . import
    x`` where x is a submodule imports x, not the package around it."""
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
                deps.update(subs)
                if target in modules and len(subs) < len(node.names):
                    deps.add(target)
        graph[name] = deps - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    return next((c for n in sorted(graph) if n not in state and (c := visit(n))), None)


def test_no_import_circle():
    graph = _imports()
    assert not [m for m, deps in graph.items() if "dilated_rnn.model.reference" in deps]  # nothing ships the oracle
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_a_cycle_is_found_where_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_top_level_is_the_public_face_over_subpackages():
    modules = sorted(p.name for p in ROOT.glob("*.py"))
    packages = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file())
    assert len(modules) <= 8, modules
    assert len(packages) >= 4 and {"model", "engine", "data", "training", "deploy", "cli"} <= set(packages)


def test_modules_and_functions_stay_small():
    for path in ROOT.rglob("*.py"):
        text = path.read_text()
        assert len(text.splitlines()) <= 600, f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines"
        if path.name == "numba_kernels.py":  # kernels aside
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, f"{path.relative_to(ROOT)}: {node.name} has {length} lines"


def test_the_fast_path_switch_is_read_in_one_module():
    def names(path):  # string literals in code, docstrings aside
        return {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)}

    readers = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.py") if "DRNN_ENGINE" in names(p)]
    assert readers == ["engine/dispatch.py"]
    for old in ("DRNN_FUSED", "DRNN_NATIVE", "turned_off", "_frozen_weights", "_index_cache"):
        assert not [p for p in ROOT.rglob("*.py") if old in p.read_text()], old


def test_the_installed_drnn_answers_help_without_importing_torch():
    """The console script a user runs (not ``main``): its imports, as Python reports them."""
    script = Path(sys.executable).parent / "drnn"
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    for argv in (["--help"], ["train", "--help"]):
        done = subprocess.run([str(script), *argv], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0 and "usage: drnn" in done.stdout
        imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "dilated_rnn" in imported and not imported & {"torch", "numpy", "numba", "onnx"}
