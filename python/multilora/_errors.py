"""Exceptions raised by multilora, one class per C status (multilora.h ``MLORA_STATUS_*``).

Every exception carries the library's message verbatim (``str(e)``), the numeric ``status`` and its
symbolic ``status_name``. Each class also inherits the builtin a Python user would catch for that kind
of failure: ``AdapterNotFoundError`` is a ``KeyError``, ``ShapeMismatchError`` a ``ValueError``, ...
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple, Type

__all__ = [
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
    "error_from_status",
]


class MultiloraError(RuntimeError):
    """A multilora call failed. ``status``/``status_name`` identify the failure; ``str()`` is the C text."""

    status: int = -1
    status_name: str = "MLORA_STATUS_UNKNOWN"

    def __init__(self, message: str = "", status: Optional[int] = None, status_name: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if status_name is not None:
            self.status_name = status_name

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status_name})"

    def __reduce__(self) -> Tuple[type, Tuple[str, int, str]]:
        return (type(self), (self.message, self.status, self.status_name))


class InvalidArgumentError(MultiloraError, ValueError):
    """MLORA_STATUS_INVALID_ARGUMENT: a bad value (empty name, duplicate name, bad count, bad option)."""

    status, status_name = 1, "MLORA_STATUS_INVALID_ARGUMENT"


class InvalidHandleError(MultiloraError, ValueError):
    """MLORA_STATUS_INVALID_HANDLE: a NULL, released or foreign handle."""

    status, status_name = 2, "MLORA_STATUS_INVALID_HANDLE"


class AdapterNotFoundError(MultiloraError, KeyError):
    """MLORA_STATUS_NOT_FOUND: an adapter name, file, tensor or input name that does not exist."""

    status, status_name = 3, "MLORA_STATUS_NOT_FOUND"


NotFoundError = AdapterNotFoundError


class AlreadyExistsError(MultiloraError, ValueError):
    """MLORA_STATUS_ALREADY_EXISTS: the adapter name is taken (pass ``replace=True`` to replace it)."""

    status, status_name = 4, "MLORA_STATUS_ALREADY_EXISTS"


class InUseError(MultiloraError):
    """MLORA_STATUS_IN_USE: the object is busy in a way the call cannot wait for."""

    status, status_name = 5, "MLORA_STATUS_IN_USE"


class MultiloraIOError(MultiloraError, OSError):
    """MLORA_STATUS_IO: the operating system refused to open/read/map/write a file."""

    status, status_name = 6, "MLORA_STATUS_IO"

    def __init__(self, message: str = "", status: Optional[int] = None, status_name: Optional[str] = None) -> None:
        MultiloraError.__init__(self, message, status, status_name)

    def __str__(self) -> str:
        return self.message


class FormatError(MultiloraError, ValueError):
    """MLORA_STATUS_FORMAT: a file or buffer is not a valid adapter, model or config."""

    status, status_name = 7, "MLORA_STATUS_FORMAT"


class ShapeMismatchError(MultiloraError, ValueError):
    """MLORA_STATUS_SHAPE_MISMATCH: a tensor's shape or byte size is not the expected one."""

    status, status_name = 8, "MLORA_STATUS_SHAPE_MISMATCH"


class MultiloraMemoryError(MultiloraError, MemoryError):
    """MLORA_STATUS_OUT_OF_MEMORY: an allocation failed."""

    status, status_name = 9, "MLORA_STATUS_OUT_OF_MEMORY"


class BufferTooSmallError(MultiloraError):
    """MLORA_STATUS_BUFFER_TOO_SMALL (the bindings size their buffers; seeing it is a bug)."""

    status, status_name = 10, "MLORA_STATUS_BUFFER_TOO_SMALL"


class VersionMismatchError(MultiloraError, ValueError):
    """MLORA_STATUS_VERSION_MISMATCH: adapter made for another model version, or ABI mismatch."""

    status, status_name = 11, "MLORA_STATUS_VERSION_MISMATCH"


class OnnxRuntimeError(MultiloraError):
    """MLORA_STATUS_RUNTIME: ONNX Runtime failed (library load, session creation, Run)."""

    status, status_name = 12, "MLORA_STATUS_RUNTIME"


class InternalError(MultiloraError):
    """MLORA_STATUS_INTERNAL: a bug in multilora; please report the message."""

    status, status_name = 13, "MLORA_STATUS_INTERNAL"


class TypeMismatchError(MultiloraError, TypeError):
    """MLORA_STATUS_TYPE_MISMATCH: a tensor's element type is not the expected one."""

    status, status_name = 14, "MLORA_STATUS_TYPE_MISMATCH"


class BusyError(MultiloraError, RuntimeError):
    """MLORA_STATUS_BUSY: an overlapping call on an object that must not overlap, or a full queue; retry later."""

    status, status_name = 15, "MLORA_STATUS_BUSY"


class ClosedError(MultiloraError, RuntimeError):
    """MLORA_STATUS_CLOSED: the engine was closed (submit after close; requests cancelled by close)."""

    status, status_name = 16, "MLORA_STATUS_CLOSED"


_BY_STATUS: Dict[int, Type[MultiloraError]] = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        InvalidHandleError,
        AdapterNotFoundError,
        AlreadyExistsError,
        InUseError,
        MultiloraIOError,
        FormatError,
        ShapeMismatchError,
        MultiloraMemoryError,
        BufferTooSmallError,
        VersionMismatchError,
        OnnxRuntimeError,
        InternalError,
        TypeMismatchError,
        BusyError,
        ClosedError,
    )
}


def error_from_status(status: int, status_name: str, message: str) -> MultiloraError:
    """The exception for a C status (called by the extension; unknown statuses give MultiloraError)."""
    cls = _BY_STATUS.get(int(status), MultiloraError)
    return cls(message, int(status), status_name)
