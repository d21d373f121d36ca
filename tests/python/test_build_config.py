"""Where CMake takes the ONNX Runtime headers from, and what it says when they are missing or disagree with
pyproject.toml's onnxruntime bound (configure only: nothing is compiled)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPS_INCLUDE = REPO / "third_party" / ".deps" / "usr" / "include" / "onnxruntime"
CMAKE = shutil.which("cmake", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))

pytestmark = pytest.mark.skipif(CMAKE is None, reason="no cmake")


def configure(tmp_path: Path, *defines: str) -> subprocess.CompletedProcess:
    args = [CMAKE, "-S", str(REPO), "-B", str(tmp_path / "build"), f"-DPython3_EXECUTABLE={sys.executable}"]
    env = {k: v for k, v in os.environ.items() if k != "ONNXRUNTIME_ROOT"}
    return subprocess.run([*args, *defines], capture_output=True, text=True, env=env, timeout=300)


def pyproject_minor() -> int:
    return int(re.search(r'"onnxruntime>=1\.(\d+)"', (REPO / "pyproject.toml").read_text()).group(1))


def fake_release(root: Path, api_version: int) -> Path:
    """An ONNX Runtime release layout (include/onnxruntime_c_api.h) with the given ORT_API_VERSION."""
    inc = root / "include"
    inc.mkdir(parents=True)
    real = (DEPS_INCLUDE / "onnxruntime_c_api.h").read_text()
    text = re.sub(r"^#define ORT_API_VERSION \d+$", f"#define ORT_API_VERSION {api_version}", real, flags=re.M)
    (inc / "onnxruntime_c_api.h").write_text(text)
    return root


def test_missing_dependencies_name_what_to_install(tmp_path):
    proc = configure(tmp_path, "-DMLORA_FETCH_DEPS=OFF", f"-DMLORA_DEPS_DIR={tmp_path / 'none'}")
    assert proc.returncode != 0
    err = " ".join(proc.stderr.split())
    for words in (
        "ONNXRUNTIME_ROOT",
        "libonnxruntime-dev",
        "onnxruntime-devel",
        "flatbuffers-compiler",
        "nlohmann-json3-dev",
        f"1.{pyproject_minor()} or newer",
    ):
        assert words in err, (words, err)


def test_onnxruntime_root_that_has_no_headers(tmp_path):
    proc = configure(tmp_path, f"-DONNXRUNTIME_ROOT={tmp_path / 'empty'}")
    assert proc.returncode != 0
    assert "has no include/onnxruntime_c_api.h" in " ".join(proc.stderr.split())


@pytest.mark.skipif(not DEPS_INCLUDE.is_dir(), reason="no fetched Debian headers to copy")
def test_onnxruntime_root_is_used_first(tmp_path):
    root = fake_release(tmp_path / "ort", pyproject_minor())
    proc = configure(tmp_path, f"-DONNXRUNTIME_ROOT={root}")
    assert proc.returncode == 0, proc.stderr
    assert f"ORT headers {root / 'include'}" in proc.stdout and "from ONNXRUNTIME_ROOT" in proc.stdout


@pytest.mark.skipif(not DEPS_INCLUDE.is_dir(), reason="no fetched Debian headers to copy")
def test_headers_older_than_the_pyproject_bound_fail(tmp_path):
    minor = pyproject_minor()
    root = fake_release(tmp_path / "ort", minor - 1)
    proc = configure(tmp_path, f"-DONNXRUNTIME_ROOT={root}")
    assert proc.returncode != 0
    err = " ".join(proc.stderr.split())
    assert f"ORT_API_VERSION {minor - 1} but pyproject.toml requires onnxruntime>=1.{minor}" in err


@pytest.mark.skipif(not DEPS_INCLUDE.is_dir(), reason="no fetched Debian headers to copy")
def test_newer_headers_fail_the_python_build(tmp_path):
    # a wheel built against newer headers needs a newer onnxruntime than pyproject.toml declares
    minor = pyproject_minor()
    root = fake_release(tmp_path / "ort", minor + 1)
    proc = configure(tmp_path, f"-DONNXRUNTIME_ROOT={root}", "-DSKBUILD=ON", "-DMLORA_BUILD_PYTHON=OFF")
    assert proc.returncode != 0
    assert f"requires onnxruntime>=1.{minor}" in " ".join(proc.stderr.split())
