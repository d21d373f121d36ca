"""The package: version source, ABI check, ONNX Runtime location, exports, typing files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import onnxruntime
import pytest

import multilora as ml
from multilora import _core

REPO = Path(__file__).resolve().parents[2]


def _header_version() -> str:
    header = (REPO / "include" / "multilora" / "multilora.h").read_text()
    return re.search(r'#define MLORA_VERSION_STRING "([0-9.]+)"', header).group(1)


def test_version_comes_from_the_header():
    assert ml.__version__ == _header_version() == _core.version()


def test_abi_versions_agree():
    assert _core.abi_version() == _core.ABI_VERSION


def test_core_uses_the_onnxruntime_wheel_library():
    info = ml.ort_info()
    assert isinstance(info, ml.OrtInfo)
    wheel_capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
    if not os.environ.get("MULTILORA_ORT_LIBRARY"):
        assert os.path.dirname(os.path.realpath(info.path)) == os.path.realpath(wheel_capi)
        assert os.path.basename(info.path).startswith("libonnxruntime.so")
    assert info.version == onnxruntime.__version__


def test_onnxruntime_library_path_is_found_without_importing_onnxruntime():
    code = "import sys, multilora; print(multilora.onnxruntime_library_path()); print('onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert os.path.basename(out[0]).startswith("libonnxruntime.so")
    assert out[1] == "False"


def test_environment_variable_overrides_the_library(tmp_path):
    # a bogus path given by the user must be reported by name, not silently replaced by the wheel's
    code = (
        "import multilora as ml\n"
        "try:\n    ml.ort_info()\nexcept ml.OnnxRuntimeError as e:\n    print('ERR', e)\n"
        "else:\n    print('OK')\n"
    )
    env = dict(os.environ, MULTILORA_ORT_LIBRARY=str(tmp_path / "libonnxruntime.so.0"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.startswith("ERR") and "libonnxruntime.so.0" in out


def test_public_names():
    for name in ml.__all__:
        assert hasattr(ml, name), name
    for name in ("Model", "Adapters", "RunOptions", "read_adapter", "write_adapter", "ort_info", "MultiloraError"):
        assert name in ml.__all__


def test_typing_files_ship_with_the_package():
    pkg = Path(ml.__file__).parent
    assert (pkg / "py.typed").exists()
    assert (pkg / "_core.pyi").exists()


def test_stub_lists_every_core_name():
    stub = (Path(ml.__file__).parent / "_core.pyi").read_text()
    for name in dir(_core):
        if not name.startswith("_"):
            assert re.search(rf"\b{name}\b", stub), f"_core.{name} missing from _core.pyi"


def test_stub_matches_the_extension(tmp_path):
    pytest.importorskip("mypy.stubtest")
    allowlist = Path(__file__).with_name("stubtest-allowlist.txt")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "multilora._core", "--allowlist", str(allowlist)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- the namespace and the package's shape ----------------------------------------------------------------

PKG = Path(ml.__file__).parent


def test_namespace_holds_only_the_public_api():
    # In a fresh interpreter: every name of `multilora` but dunders is in __all__, and the other way round.
    # The package's own submodules (multilora.generation, multilora._core, ...) are bound by the import system
    # itself and are not API names; anything else (os, glob, Optional, ...) would be a leak.
    code = (
        "import json, types, multilora as m\n"
        "own = {n for n in dir(m) if isinstance(getattr(m, n), types.ModuleType)"
        " and getattr(m, n).__name__.startswith('multilora.')}\n"
        "names = [n for n in dir(m) if not (n.startswith('__') and n.endswith('__')) and n not in own]\n"
        "print(json.dumps([names, [n for n in m.__all__ if not n.startswith('__')], sorted(own)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    import json

    names, public, own = json.loads(out)
    assert sorted(names) == sorted(public)
    assert len(public) == len(set(public))
    assert "_core" in own  # the check above looked at a real import


def _package_modules() -> list:
    import importlib

    return [importlib.import_module(f"multilora.{p.stem}") for p in sorted(PKG.glob("*.py")) if p.stem != "__init__"]


def test_one_class_per_public_name():
    # GeneratorParams and Generator once lived twice (a base in _api and a subclass in generation).
    defined: dict = {}
    for module in _package_modules():
        for name, obj in vars(module).items():
            if isinstance(obj, type) and obj.__module__ == module.__name__:
                defined.setdefault(name, []).append(module.__name__)
    twice = {n: m for n, m in defined.items() if len(m) > 1}
    assert not twice, twice
    for cls in (ml.RunOptions, ml.GeneratorParams, ml.Generator):  # one shared adapter-set implementation
        assert cls.set_active_adapters is ml.RunOptions.set_active_adapters
        assert cls.set_active_adapters_per_row is ml.RunOptions.set_active_adapters_per_row
        assert cls.clear_active_adapters is ml.RunOptions.clear_active_adapters


def _imports(path: Path) -> set:
    """Modules of the package that `path` imports (relative imports, at any depth of the file)."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names if (PKG / f"{a.name}.py").exists())
    return out


def test_package_modules_import_no_cycle():
    # __init__ re-exports everything, so it is left out: a cycle among the other modules is what hurts.
    graph = {p.stem: _imports(p) - {"__init__"} for p in PKG.glob("*.py") if p.stem != "__init__"}
    state: dict = {}

    def visit(node: str, stack: list) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != "open", "import cycle: " + " -> ".join(stack + [node, nxt])
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert "cli_peft" in graph["cli"] and "cli" not in graph["cli_peft"]  # the former cli <-> cli_peft circle


def test_no_long_functions():
    # docs/conventions.md §8: no function over ~120 lines without a reason in a comment (a "# long: <reason>"
    # line right above the def).
    import ast

    long = []
    for path in sorted(PKG.glob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                above = [ln.strip() for ln in lines[max(0, node.lineno - 4) : node.lineno - 1]]
                if size > 120 and not any(ln.startswith("# long:") for ln in above):
                    long.append(f"{path.name}:{node.lineno} {node.name} ({size} lines)")
    assert not long, long


# ---- tables generated from the header ---------------------------------------------------------------------


def _header_defines(prefix: str) -> dict:
    header = (REPO / "include" / "multilora" / "multilora.h").read_text()
    return {m.group(1): int(m.group(2)) for m in re.finditer(rf"^#define MLORA_{prefix}_(\w+) (-?\d+)", header, re.M)}


def test_status_table_is_the_headers():
    from multilora import _constants, _errors

    statuses = _header_defines("STATUS")
    assert _constants.STATUS == statuses and len(statuses) >= 15
    for short, value in statuses.items():
        assert _core.status_name(value) == "MLORA_STATUS_" + short
        if value == 0:
            continue
        err = _errors.error_from_status(value, "", "m")
        assert err.status == value and err.status_name == "MLORA_STATUS_" + short
        assert type(err) is not ml.MultiloraError, f"MLORA_STATUS_{short} has no exception class in _errors.py"


def test_dtype_names_and_sizes_come_from_the_library():
    import numpy as np

    from multilora import _constants, _dtypes

    dtypes = _header_defines("DTYPE")
    assert _constants.DTYPE == dtypes and len(dtypes) == 13
    for short, code in dtypes.items():
        name = short.lower()
        assert _core.dtype_name(code) == name == _dtypes.dtype_name(code)
        itemsize = 2 if name == "bfloat16" else np.dtype(name).itemsize  # numpy as the independent reference
        assert _core.dtype_size(code) == itemsize == _dtypes.dtype_size(code)
    for bad in (0, 8, 14, 15, 17, -1, 1000):
        assert _core.dtype_name(bad) == "unknown" and _dtypes.dtype_size(bad) == 0
        with pytest.raises(ml.InvalidArgumentError):
            _core.dtype_size(bad)


# ---- docs/design.md §1: the layers of csrc/ -------------------------------------------------------------------

# Includes that still run upward, each to be removed by the change that fixes it; the test fails on a new
# upward include and on an entry here that no longer exists. None is left (issue 12 item 2: the slot table is
# owned beside the model, resolving names into sets is the run layer's, the GenAI folder is opened by gen/).
KNOWN_UPWARD: set = set()


def test_csrc_includes_follow_the_layers():
    design = (REPO / "docs" / "design.md").read_text(encoding="utf-8")
    block = re.search(r"```layers\n(.*?)```", design, re.S)
    assert block, "docs/design.md has no ```layers block"
    tier = {k.strip(): int(v) for k, v in (ln.split(":") for ln in block.group(1).strip().splitlines())}
    csrc = REPO / "csrc"
    dirs = {p.name for p in csrc.iterdir() if p.is_dir() and any(p.glob("*.[ch]*"))}
    dirs.discard("schema")  # FlatBuffers schema only, no C++
    assert dirs <= set(tier), f"csrc directories missing from the layers block: {sorted(dirs - set(tier))}"
    upward = set()
    for path in sorted(csrc.rglob("*")):
        if path.suffix not in (".h", ".cpp"):
            continue
        here = path.relative_to(csrc).parts[0]
        for m in re.finditer(r'^#include "(\w+)/', path.read_text(encoding="utf-8"), re.M):
            there = m.group(1)
            if there in tier and here in tier and tier[there] < tier[here]:
                upward.add((here, there))
    assert upward == KNOWN_UPWARD, f"upward includes: {sorted(upward)}; listed as known: {sorted(KNOWN_UPWARD)}"


def test_doc_citations_point_at_existing_sections():
    # Code cites "docs/design.md §N" and "docs/conventions.md §N"; each N must be a "## N." heading there.
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    headings = {}
    for doc in ("design", "conventions"):
        text = (REPO / "docs" / f"{doc}.md").read_text(encoding="utf-8")
        headings[doc] = set(re.findall(r"^## (\d+)\.", text, re.M))
    cited = 0
    for name in files:
        path = REPO / name
        if path.suffix not in (".py", ".md", ".h", ".hpp", ".cpp", ".c", ".cs", ".java", ".sh", ".fbs", ".txt"):
            continue
        for doc, number in re.findall(r"docs/(design|conventions)\.md §(\d+)", path.read_text(errors="replace")):
            assert number in headings[doc], f"{name} cites docs/{doc}.md §{number}, which has no such section"
            cited += 1
    assert cited >= 26
