"""Finding the ONNX Runtime library of the installed ``onnxruntime`` wheel for the native core."""

from __future__ import annotations

import glob
import importlib.util
import os
from typing import Optional

from . import _core
from ._errors import InUseError

__all__ = ["onnxruntime_library_path", "point_core_at_onnxruntime"]


def onnxruntime_library_path() -> Optional[str]:
    """The libonnxruntime shared library shipped in the installed onnxruntime wheel, if any.

    Found without importing onnxruntime (the wheel ships ``capi/libonnxruntime.so.<version>``).
    """
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(root, "capi", "libonnxruntime.so*")))
        # prefer the plainest name (libonnxruntime.so, then the shortest versioned one)
        found.sort(key=len)
        if found:
            return found[0]
    return None


def point_core_at_onnxruntime() -> None:
    """Called once at import: hands the wheel's library to the core unless MULTILORA_ORT_LIBRARY names one."""
    if os.environ.get("MULTILORA_ORT_LIBRARY"):
        return  # the core reads it itself
    path = onnxruntime_library_path()
    if path is None:
        return  # the core falls back to its build-time default and the default search
    try:
        _core.set_ort_library_path(path)
    except InUseError:
        pass  # ONNX Runtime was already loaded (e.g. the package was re-imported)
