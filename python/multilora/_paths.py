"""Where the installed package keeps its C headers and shared library, for C/C++ (and C#/Java) hosts that
build against the copy inside the wheel: ``multilora.get_include()``, ``multilora.get_library()`` and
``python -m multilora --cflags / --libs``."""

from __future__ import annotations

import glob
import os
from typing import List

__all__ = ["get_include", "get_library", "cflags", "libs"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def get_include() -> str:
    """The folder to add to the include path: it holds ``multilora/multilora.h`` and ``multilora/multilora.hpp``."""
    path = os.path.join(_HERE, "include")
    if not os.path.isfile(os.path.join(path, "multilora", "multilora.h")):
        raise FileNotFoundError(f"the multilora headers are not installed in {path} (a broken install?)")
    return path


def get_library() -> str:
    """The path of the package's shared library, ``libmultilora.so.<major version>`` (its soname; the same file
    name and soname as a ``cmake --install`` of the C library installs)."""
    found: List[str] = sorted(glob.glob(os.path.join(_HERE, "libmultilora.so*")), key=len)
    if not found:
        raise FileNotFoundError(f"libmultilora.so is not installed in {_HERE} (a broken install?)")
    return found[0]


def cflags() -> str:
    """Compiler flags: ``-I<get_include()>``."""
    return f"-I{get_include()}"


def libs() -> str:
    """Linker flags: the library by path plus an rpath to its folder (the wheel's file is versioned, so
    ``-lmultilora`` would not find it)."""
    lib = get_library()
    return f"{lib} -Wl,-rpath,{os.path.dirname(lib)}"
