"""The installed package as a C library: multilora.get_include() / get_library(), `python -m multilora
--cflags/--libs` (a C program built with them runs), the soname, and the onnxruntime bound of the metadata."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import multilora as ml

REPO = Path(__file__).resolve().parents[2]
HEADER = REPO / "include" / "multilora" / "multilora.h"


def _define(name: str) -> str:
    return re.search(rf"^#define {name} (\S+)", HEADER.read_text(), re.M).group(1)


def _flag(flag: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "multilora", flag], capture_output=True, text=True, check=True)
    assert proc.stderr == ""
    return proc.stdout.strip()


def test_get_include_holds_this_checkouts_headers():
    inc = Path(ml.get_include())
    for name in ("multilora.h", "multilora.hpp"):
        assert (inc / "multilora" / name).read_bytes() == (REPO / "include" / "multilora" / name).read_bytes()


def test_get_library_is_the_versioned_soname():
    lib = Path(ml.get_library())
    major = _define("MLORA_VERSION_MAJOR")
    assert lib.name == f"libmultilora.so.{major}"
    assert lib.parent == Path(ml.__file__).parent
    assert sorted(p.name for p in lib.parent.glob("libmultilora.so*")) == [lib.name]  # one file, no copies
    if shutil.which("readelf"):
        dyn = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
        assert f"Library soname: [libmultilora.so.{major}]" in dyn


def test_module_flags():
    assert _flag("--cflags") == f"-I{ml.get_include()}"
    assert _flag("--includedir") == ml.get_include()
    assert _flag("--library") == ml.get_library()
    assert _flag("--libs") == f"{ml.get_library()} -Wl,-rpath,{os.path.dirname(ml.get_library())}"


def test_module_flag_with_extra_argument_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "multilora", "--cflags", "x"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_program_builds_with_the_flags_and_runs(tmp_path):
    src = tmp_path / "app.c"
    src.write_text(
        "#include <stdio.h>\n#include <multilora/multilora.h>\n"
        'int main(void) { printf("%d %d %s\\n", (int)mlora_abi_version(), MLORA_ABI_VERSION,'
        " mlora_status_name(MLORA_STATUS_NOT_FOUND)); return 0; }\n"
    )
    exe = tmp_path / "app"
    cmd = ["cc", "-std=c99", "-Wall", "-Werror", str(src), *_flag("--cflags").split(), *_flag("--libs").split()]
    subprocess.run([*cmd, "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]})
    abi = _define("MLORA_ABI_VERSION")
    assert out.stdout.split() == [abi, abi, "MLORA_STATUS_NOT_FOUND"]


def test_onnxruntime_bound_matches_the_headers_api_version():
    """pyproject.toml's onnxruntime>=1.N is the ORT_API_VERSION the core was built with (CMakeLists.txt fails the
    build otherwise); the installed metadata carries the same bound."""
    requires = metadata.requires("multilora") or []
    bound = [r for r in requires if re.match(r"onnxruntime\s*>=", r)]
    assert len(bound) == 1, requires
    minor = int(re.search(r">=\s*1\.(\d+)", bound[0]).group(1))
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(rf'"onnxruntime>=1\.{minor}"', pyproject)
    ort_header = REPO / "third_party" / ".deps" / "usr" / "include" / "onnxruntime" / "onnxruntime_c_api.h"
    if ort_header.exists():  # the Debian headers the default build uses
        assert re.search(rf"^#define ORT_API_VERSION {minor}$", ort_header.read_text(), re.M)


def test_optional_extras_name_the_packages_the_cli_asks_for():
    from multilora.cli import EXTRAS

    provides = metadata.metadata("multilora").get_all("Provides-Extra") or []
    requires = metadata.requires("multilora") or []
    for module, extra in EXTRAS.items():
        if extra is None:
            continue
        assert extra in provides
        name = re.sub(r"[-_.]+", "-", module).lower()
        assert any(
            re.sub(r"[-_.]+", "-", r).lower().startswith(name) and re.search(rf"extra\s*==\s*['\"]{extra}['\"]", r)
            for r in requires
        ), (module, extra, requires)
