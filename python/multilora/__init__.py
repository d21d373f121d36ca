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

from ._api import (
    Adapter,
    AdapterFile,
    Adapters,
    BatchSlots,
    BatchSlotStats,
    LoraInputInfo,
    Model,
    ModelOptions,
    OrtInfo,
    ParamInfo,
    RunOptions,
    SessionRuns,
    TensorInfo,
    ort_info,
    read_adapter,
    set_global_threads,
    write_adapter,
)
from ._core import HEADER_VERSION as __version__
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
    MultiloraFileNotFoundError,
    MultiloraIOError,
    MultiloraMemoryError,
    NotFoundError,
    OnnxRuntimeError,
    ShapeMismatchError,
    TypeMismatchError,
    VersionMismatchError,
)
from ._ort import onnxruntime_library_path, point_core_at_onnxruntime
from ._paths import get_include, get_library
from .engine import Engine, EngineStats, Request, Usage
from .generation import (
    Generator,
    GeneratorParams,
    Tokenizer,
    TokenizerStream,
    generate,
    generate_stream,
)

__all__ = [
    "__version__",
    "Model",
    "ModelOptions",
    "Adapters",
    "Adapter",
    "AdapterFile",
    "BatchSlots",
    "BatchSlotStats",
    "SessionRuns",
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
    "set_global_threads",
    "onnxruntime_library_path",
    "get_include",
    "get_library",
    "MultiloraError",
    "InvalidArgumentError",
    "InvalidHandleError",
    "NotFoundError",
    "AdapterNotFoundError",
    "MultiloraFileNotFoundError",
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

point_core_at_onnxruntime()
del point_core_at_onnxruntime
