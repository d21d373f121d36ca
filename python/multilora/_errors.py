"""Exceptions raised by multilora, one class per C status (multilora.h ``MLORA_STATUS_*``).

Every exception carries the library's message verbatim (``str(e)``), the numeric ``status`` and its
symbolic ``status_name``. Each class also inherits the builtin a Python user would catch for that kind
of failure: ``NotFoundError`` is a ``KeyError``, ``ShapeMismatchError`` a ``ValueError``, ...

``MLORA_STATUS_NOT_FOUND`` has three classes, chosen by what was not found: a name (``NotFoundError``, a
``KeyError``: a model input or output, an adapter parameter that is no LoRA input), an adapter name
(``AdapterNotFoundError``, a ``NotFoundError``) or a file (``MultiloraFileNotFoundError``, a
``FileNotFoundError``). The status numbers and names come from ``_constants`` (generated from multilora.h).
"""

from __future__ import annotations

import errno
import os
from typing import Any, Dict, Optional, Sequence, Tuple, Type

from . import _constants as _c

__all__ = [
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
    "error_from_status",
    "opening_file",
    "adapter_lookup",
]


def _status(short: str) -> Tuple[int, str]:
    """(number, name) of MLORA_STATUS_<short>, from the header (a status renamed there fails the import)."""
    return _c.STATUS[short], "MLORA_STATUS_" + short


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

    status, status_name = _status("INVALID_ARGUMENT")


class InvalidHandleError(MultiloraError, ValueError):
    """MLORA_STATUS_INVALID_HANDLE: a NULL, released or foreign handle."""

    status, status_name = _status("INVALID_HANDLE")


class NotFoundError(MultiloraError, KeyError):
    """MLORA_STATUS_NOT_FOUND: a name that does not exist (a model input or output, a tensor, an adapter
    parameter that is no LoRA input of the model). Adapter names and files have the subclasses below."""

    status, status_name = _status("NOT_FOUND")


class AdapterNotFoundError(NotFoundError):
    """MLORA_STATUS_NOT_FOUND for an adapter name that is not loaded (get, unload, set_active_adapters)."""


class MultiloraFileNotFoundError(MultiloraError, FileNotFoundError):
    """MLORA_STATUS_NOT_FOUND for a file that does not exist: a model, an adapter file or PEFT folder, a
    genai_config.json or the decoder it names, a tokenizer.json. ``filename`` is the path the call was given."""

    status, status_name = _status("NOT_FOUND")

    def __init__(
        self,
        message: str = "",
        status: Optional[int] = None,
        status_name: Optional[str] = None,
        filename: Optional[str] = None,
    ) -> None:
        MultiloraError.__init__(self, message, status, status_name)
        self.errno = errno.ENOENT
        self.strerror = message
        self.filename = filename

    def __str__(self) -> str:
        return self.message


class AlreadyExistsError(MultiloraError, ValueError):
    """MLORA_STATUS_ALREADY_EXISTS: the adapter name is taken (pass ``replace=True`` to replace it)."""

    status, status_name = _status("ALREADY_EXISTS")


class InUseError(MultiloraError):
    """MLORA_STATUS_IN_USE: the object is busy in a way the call cannot wait for."""

    status, status_name = _status("IN_USE")


class MultiloraIOError(MultiloraError, OSError):
    """MLORA_STATUS_IO: the operating system refused to open/read/map/write a file."""

    status, status_name = _status("IO")

    def __init__(self, message: str = "", status: Optional[int] = None, status_name: Optional[str] = None) -> None:
        MultiloraError.__init__(self, message, status, status_name)

    def __str__(self) -> str:
        return self.message


class FormatError(MultiloraError, ValueError):
    """MLORA_STATUS_FORMAT: a file or buffer is not a valid adapter, model or config."""

    status, status_name = _status("FORMAT")


class ShapeMismatchError(MultiloraError, ValueError):
    """MLORA_STATUS_SHAPE_MISMATCH: a tensor's shape or byte size is not the expected one."""

    status, status_name = _status("SHAPE_MISMATCH")


class MultiloraMemoryError(MultiloraError, MemoryError):
    """MLORA_STATUS_OUT_OF_MEMORY: an allocation failed."""

    status, status_name = _status("OUT_OF_MEMORY")


class BufferTooSmallError(MultiloraError):
    """MLORA_STATUS_BUFFER_TOO_SMALL (the bindings size their buffers; seeing it is a bug)."""

    status, status_name = _status("BUFFER_TOO_SMALL")


class VersionMismatchError(MultiloraError, ValueError):
    """MLORA_STATUS_VERSION_MISMATCH: adapter made for another model version, or ABI mismatch."""

    status, status_name = _status("VERSION_MISMATCH")


class OnnxRuntimeError(MultiloraError):
    """MLORA_STATUS_RUNTIME: ONNX Runtime failed (library load, session creation, Run)."""

    status, status_name = _status("RUNTIME")


class InternalError(MultiloraError):
    """MLORA_STATUS_INTERNAL: a bug in multilora; please report the message."""

    status, status_name = _status("INTERNAL")


class TypeMismatchError(MultiloraError, TypeError):
    """MLORA_STATUS_TYPE_MISMATCH: a tensor's element type is not the expected one."""

    status, status_name = _status("TYPE_MISMATCH")


class BusyError(MultiloraError, RuntimeError):
    """MLORA_STATUS_BUSY: the call overlapped another call that must not overlap on the same object (two
    threads stepping one generator, changing a generator while it steps), or a full queue (engine submit over
    its queue limit). Retry later."""

    status, status_name = _status("BUSY")


class ClosedError(MultiloraError, RuntimeError):
    """MLORA_STATUS_CLOSED: the engine was closed (submit after close; requests cancelled by close)."""

    status, status_name = _status("CLOSED")


_BY_STATUS: Dict[int, Type[MultiloraError]] = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        InvalidHandleError,
        NotFoundError,
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
    return cls(message, int(status), status_name or _c.STATUS_NAMES.get(int(status), "MLORA_STATUS_UNKNOWN"))


def _file_missing(path: str, folder_files: Optional[Sequence[str]]) -> bool:
    if folder_files is None:
        return True  # every NOT_FOUND of the call is about a file
    if not os.path.exists(path):
        return True
    return os.path.isdir(path) and any(not os.path.exists(os.path.join(path, f)) for f in folder_files)


class opening_file:  # noqa: N801 - used like a function: ``with opening_file(path): ...``
    """Turns the NotFoundError of a call that opens ``path`` into MultiloraFileNotFoundError when a file is
    what is missing. ``folder_files=None``: the call reports NOT_FOUND only for files (Model, Adapter.open);
    else the path itself, or one of these files inside a folder path, must be missing (Adapters.load also
    reports an adapter parameter that is no LoRA input as NOT_FOUND). A class, not a contextlib generator:
    it wraps every adapter load, and a generator-based manager cost a few microseconds of each."""

    __slots__ = ("path", "folder_files")

    def __init__(self, path: str, folder_files: Optional[Sequence[str]] = None) -> None:
        self.path = path
        self.folder_files = folder_files

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, e: Any, tb: Any) -> bool:
        if kind is NotFoundError and _file_missing(self.path, self.folder_files):
            raise MultiloraFileNotFoundError(e.message, e.status, e.status_name, self.path) from None
        return False


class adapter_lookup:  # noqa: N801 - used like a function: ``with adapter_lookup(): ...``
    """Turns the NotFoundError of a call that looks adapter names up into AdapterNotFoundError (the only
    NOT_FOUND such calls report)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, e: Any, tb: Any) -> bool:
        if kind is NotFoundError:
            raise AdapterNotFoundError(e.message, e.status, e.status_name) from None
        return False
