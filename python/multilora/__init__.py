"""multilora — serve many LoRA adapters on one ONNX base model.

    import multilora as ml
    model = ml.Model("model.onnx")
    adapters = ml.Adapters(model)
    adapters.load("sql.onnx_adapter", "sql")
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, ["sql"], [1.0])
    logits, = model.run(["logits"], {"input_ids": ids}, opts)

At import the native core is pointed at the ONNX Runtime library of the installed ``onnxruntime``
wheel (``onnxruntime/capi/libonnxruntime.so*``) unless the environment variable
``MULTILORA_ORT_LIBRARY`` names one.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from typing import Optional

from . import _core  # noqa: E402  (after _errors: the extension raises its classes)
from ._api import (  # noqa: E402
    Adapter,
    AdapterFile,
    Adapters,
    BatchSlots,
    LoraInputInfo,
    Model,
    ModelOptions,
    OrtInfo,
    ParamInfo,
    RunOptions,
    TensorInfo,
    ort_info,
    read_adapter,
    write_adapter,
)
from ._errors import (
    AdapterNotFoundError,
    AlreadyExistsError,
    BufferTooSmallError,
    BusyError,
    ClosedError,
    FormatError,
    InternalError,
    InUseError,
    InvalidArgumentError,
    InvalidHandleError,
    MultiloraError,
    MultiloraIOError,
    MultiloraMemoryError,
    NotFoundError,
    OnnxRuntimeError,
    ShapeMismatchError,
    TypeMismatchError,
    VersionMismatchError,
)
from .engine import Engine, EngineStats, Request, Usage  # noqa: E402
from .generation import (  # noqa: E402  (Generation: extends _api's GeneratorParams/Generator)
    Generator,
    GeneratorParams,
    Tokenizer,
    TokenizerStream,
    generate,
    generate_stream,
)

__version__: str = _core.HEADER_VERSION

__all__ = [
    "__version__",
    "Model",
    "ModelOptions",
    "Adapters",
    "Adapter",
    "AdapterFile",
    "BatchSlots",
    "RunOptions",
    "GeneratorParams",
    "Generator",
    "Tokenizer",
    "TokenizerStream",
    "generate_stream",
    "generate",
    "Engine",
    "EngineStats",
    "Request",
    "Usage",
    "TensorInfo",
    "LoraInputInfo",
    "ParamInfo",
    "OrtInfo",
    "read_adapter",
    "write_adapter",
    "ort_info",
    "onnxruntime_library_path",
    "MultiloraError",
    "InvalidArgumentError",
    "InvalidHandleError",
    "AdapterNotFoundError",
    "NotFoundError",
    "AlreadyExistsError",
    "InUseError",
    "MultiloraIOError",
    "FormatError",
    "ShapeMismatchError",
    "MultiloraMemoryError",
    "BufferTooSmallError",
    "VersionMismatchError",
    "OnnxRuntimeError",
    "InternalError",
    "TypeMismatchError",
    "BusyError",
    "ClosedError",
]


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


def _point_core_at_onnxruntime() -> None:
    if os.environ.get("MULTILORA_ORT_LIBRARY"):
        return  # the core reads it itself
    path = onnxruntime_library_path()
    if path is None:
        return  # the core falls back to its build-time default and the default search
    try:
        _core.set_ort_library_path(path)
    except InUseError:
        pass  # ONNX Runtime was already loaded (e.g. the package was re-imported)


_point_core_at_onnxruntime()
