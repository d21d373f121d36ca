"""Element types: multilora/ONNX codes (TensorProto.DataType numbering) and their names.

The codes come from the header (``_constants``, generated); names and sizes from the library
(``mlora_dtype_name``/``mlora_dtype_size``), so no table here can drift from the C one.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from . import _constants, _core

__all__ = ["DTYPE_NAMES", "DTYPE_CODES", "dtype_name", "dtype_code", "dtype_size"]

#: code -> name; names follow numpy except bfloat16 (ml_dtypes.bfloat16).
DTYPE_NAMES: Dict[int, str] = {code: _core.dtype_name(code) for code in _constants.DTYPE.values()}
#: name -> code (also accepts ONNX spellings "float", "double", "half").
DTYPE_CODES: Dict[str, int] = {name: code for code, name in DTYPE_NAMES.items()}
DTYPE_CODES.update({"float": _constants.DTYPE["FLOAT32"], "double": _constants.DTYPE["FLOAT64"]})
DTYPE_CODES["half"] = _constants.DTYPE["FLOAT16"]


def dtype_name(code: int) -> str:
    """The name of a dtype code ("float32", "bfloat16", ...); "dtype(N)" for an unknown code."""
    return DTYPE_NAMES.get(int(code), f"dtype({int(code)})")


def dtype_size(code: int) -> int:
    """Bytes per element; 0 for an unknown code."""
    return int(_core.dtype_size(int(code))) if int(code) in DTYPE_NAMES else 0  # _core raises for unknown codes


def dtype_code(dtype: object) -> int:
    """The code of a dtype given as a name ("bfloat16"), a code, or anything numpy accepts."""
    if isinstance(dtype, (int, np.integer)) and not isinstance(dtype, bool):
        if int(dtype) not in DTYPE_NAMES:
            raise ValueError(f"unknown multilora dtype code {int(dtype)}; known: {sorted(DTYPE_NAMES)}")
        return int(dtype)
    if isinstance(dtype, str) and dtype in DTYPE_CODES:
        return DTYPE_CODES[dtype]
    name = np.dtype(dtype).name  # type: ignore[call-overload]
    if name not in DTYPE_CODES:
        raise ValueError(f"numpy dtype {name} has no multilora/ONNX element type")
    return DTYPE_CODES[name]
