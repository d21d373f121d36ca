"""Element types: multilora/ONNX codes (TensorProto.DataType numbering) and their names."""

from __future__ import annotations

from typing import Dict

import numpy as np

__all__ = ["DTYPE_NAMES", "DTYPE_CODES", "dtype_name", "dtype_code", "dtype_size"]

#: code -> name; names follow numpy except bfloat16 (ml_dtypes.bfloat16).
DTYPE_NAMES: Dict[int, str] = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    16: "bfloat16",
}
#: name -> code (also accepts ONNX spellings "float", "double", "half").
DTYPE_CODES: Dict[str, int] = {name: code for code, name in DTYPE_NAMES.items()}
DTYPE_CODES.update({"float": 1, "double": 11, "half": 10})

_SIZES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}


def dtype_name(code: int) -> str:
    """The name of a dtype code ("float32", "bfloat16", ...); "dtype(N)" for an unknown code."""
    return DTYPE_NAMES.get(int(code), f"dtype({int(code)})")


def dtype_size(code: int) -> int:
    """Bytes per element; 0 for an unknown code."""
    return _SIZES.get(int(code), 0)


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
