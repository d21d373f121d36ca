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
