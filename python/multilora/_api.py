"""The Python surface: Model, Adapters, Adapter, RunOptions, adapter files, generation.

Each class holds one native object of ``multilora._core`` (which binds the C ABI through
``multilora.hpp``). ``close()`` releases it at once and is idempotent; any later use raises
``ValueError`` naming the object; every class is a context manager. Handles may be closed in any order:
the library keeps what it needs alive (a registry keeps its model, run options keep their adapters).
"""

from __future__ import annotations

import operator
import os
from typing import (
    Any,
    Dict,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np

from . import _core
from ._dtypes import dtype_code, dtype_name
from ._errors import InvalidArgumentError, InvalidHandleError, adapter_lookup, opening_file

__all__ = [
    "Model",
    "ModelOptions",
    "Adapters",
    "Adapter",
    "RunOptions",
    "AdapterFile",
    "TensorInfo",
    "LoraInputInfo",
    "ParamInfo",
    "OrtInfo",
    "BatchSlots",
    "BatchSlotStats",
    "SessionRuns",
    "set_global_threads",
    "read_adapter",
    "write_adapter",
    "ort_info",
]

PathLike = Union[str, "os.PathLike[str]"]
BytesLike = Union[bytes, bytearray, memoryview, np.ndarray]


class TensorInfo(NamedTuple):
    """A regular model input or output: name, dtype name, declared shape (None for symbolic dims)."""

    name: str
    dtype: str
    shape: Tuple[Optional[int], ...]


class LoraInputInfo(NamedTuple):
    """A LoRA input of the model.

    ``shape`` has None on the rank axis; ``kind`` is "A" ([in, r], rank axis 1) or "B" ([r, out],
    rank axis 0); ``features`` is the fixed dim (in features for A, out features for B). A quantized LoRA
    input (the MatMulNBits weight, scales or zero points of an int4 model's LoRA pair; dtype uint8 for the
    weight) describes its pair half's matrix [in, r] / [r, out] with the rank the model fixes on the rank axis.
    """

    name: str
    dtype: str
    shape: Tuple[Optional[int], Optional[int]]
    rank_axis: int
    kind: str
    features: int


class ParamInfo(NamedTuple):
    """An adapter parameter: dtype name, shape, size in bytes."""

    dtype: str
    shape: Tuple[int, ...]
    nbytes: int


class OrtInfo(NamedTuple):
    """The ONNX Runtime library in use."""

    path: str
    version: str


class BatchSlots(NamedTuple):
    """A model's slot table for per-row adapters (adapter-aware batching).

    ``slots`` is its size S (slot 0 is the base model; 0 when the model is not prepared with
    ``multilora prepare-batching``); ``resident`` is how many adapter sets occupy slots now (0..S-1; it may
    change as soon as it is read)."""

    slots: int
    resident: int


class SessionRuns(NamedTuple):
    """Runs a model made on each of its sessions since it was created: ``lora`` on the LoRA graph, ``base``
    on the base graph (``multilora prepare-batching`` writes one; always 0 without it). A run, generation
    step or engine step in which no row has an adapter goes to the base graph."""

    lora: int
    base: int


class BatchSlotStats(NamedTuple):
    """Counters of a model's slot table since the model was created (all 0 when it is not prepared).

    Per distinct adapter set of each run or generation step with per-row adapters: ``hits`` when the set was
    resident, ``misses`` when it was written into a slot, ``evictions`` when that slot held another set (the
    least recently used one that no running call pins)."""

    hits: int
    misses: int
    evictions: int


class _Native:
    """Holds one native object; close() idempotent; use after close raises ValueError."""

    _native: Any = None

    def _describe(self) -> str:
        return type(self).__name__

    def _n(self) -> Any:
        native = self._native
        if native is None:
            # InvalidHandleError is a ValueError too (docs/conventions.md §3) and carries the status every
            # binding reports.
            raise InvalidHandleError(f"{self._describe()} is closed")
        return native

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._native is None

    def _state(self) -> str:
        return "closed" if self._native is None else "open"

    def close(self) -> None:
        """Releases the native handle now (idempotent). Objects that use it keep what they need."""
        native, self._native = self._native, None
        if native is not None:
            native.close()

    def __enter__(self) -> Any:
        self._n()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fspath(path: PathLike, what: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what}: path must be str or os.PathLike, not {type(path).__name__}")
    p = os.fspath(path)
    if isinstance(p, str):
        try:
            p.encode("utf-8")
        except UnicodeEncodeError as e:  # e.g. surrogate-escaped bytes: the C ABI takes UTF-8 paths only
            _core.raise_status(1, f"{what}: path {p!r} is not valid UTF-8 ({e.reason} at {e.start})")
    return p


def _shape(dims: Sequence[int]) -> Tuple[Optional[int], ...]:
    return tuple(None if d < 0 else int(d) for d in dims)


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------


class ModelOptions:
    """Options for creating a :class:`Model` (validated as they are set)."""

    def __init__(
        self,
        log_level: Optional[int] = None,
        intra_op_threads: Optional[int] = None,
        config: Optional[Mapping[str, str]] = None,
        batch_slots: Optional[int] = None,
        allow_external_paths: Optional[bool] = None,
        base_graph: Optional[bool] = None,
    ) -> None:
        self._native = _core.ModelOptions()
        self._settings: Dict[str, Any] = {}
        if allow_external_paths is not None:
            self.set_allow_external_paths(allow_external_paths)
        if base_graph is not None:
            self.set_base_graph(base_graph)
        if log_level is not None:
            self.set_log_level(log_level)
        if intra_op_threads is not None:
            self.set_intra_op_threads(intra_op_threads)
        if batch_slots is not None:
            self.set_batch_slots(batch_slots)
        for key, value in (config or {}).items():
            self.set_config_entry(key, value)

    def set_log_level(self, level: int) -> ModelOptions:
        """ONNX Runtime log severity for the session: 0 verbose .. 4 fatal (default 3, error)."""
        self._native.set_log_level(int(level))
        self._settings["log_level"] = int(level)
        return self

    def set_intra_op_threads(self, threads: int) -> ModelOptions:
        """Intra-op thread count (0 = ONNX Runtime's default)."""
        self._native.set_intra_op_threads(int(threads))
        self._settings["intra_op_threads"] = int(threads)
        return self

    def set_config_entry(self, key: str, value: str) -> ModelOptions:
        """A session configuration entry passed to ONNX Runtime (AddSessionConfigEntry)."""
        self._native.set_config_entry(str(key), str(value))
        self._settings.setdefault("config", {})[str(key)] = str(value)
        return self

    def set_batch_slots(self, slots: int) -> ModelOptions:
        """Slot-table size S of a model prepared for per-row adapters (``multilora prepare-batching``): slot 0
        is the base model, slots 1..S-1 each hold one composed adapter set, least recently used out. Default
        17, range 2..4097 (InvalidArgumentError outside). Ignored for models not prepared for batching."""
        n = operator.index(slots)
        if n < 0:  # the C ABI takes a size_t: a negative count is out of range like any other
            raise InvalidArgumentError(f"batch_slots {n} is outside 2..4097 (slot 0 is the base model)")
        self._native.set_batch_slots(n)
        self._settings["batch_slots"] = n
        return self

    def set_allow_external_paths(self, allow: bool) -> ModelOptions:
        """Let a model folder's genai_config.json name files outside the folder (absolute paths, ``..``).
        Refused by default (FormatError naming the key and path): a model folder may come from someone else."""
        self._native.set_allow_external_paths(bool(allow))
        self._settings["allow_external_paths"] = bool(allow)
        return self

    def set_base_graph(self, use: bool) -> ModelOptions:
        """Open the base graph a prepared model names (metadata ``multilora.base_graph``, written by
        ``multilora prepare-batching``) as a second session over the same weights, and run it whenever no row
        has an adapter (default True; see :attr:`Model.session_runs`). False: one session."""
        self._native.set_base_graph(bool(use))
        self._settings["base_graph"] = bool(use)
        return self

    def __repr__(self) -> str:
        inner = " ".join(f"{k}={v!r}" for k, v in self._settings.items())
        return f"<ModelOptions{' ' + inner if inner else ''}>"


class Model(_Native):
    """A LoRA-enabled ONNX model (an .onnx file, or a GenAI model folder) ready to run.

    ``Model(path, options=None, **kwargs)``: kwargs are :class:`ModelOptions` arguments
    (``log_level``, ``intra_op_threads``, ``config``, ``batch_slots``, ``allow_external_paths``,
    ``base_graph``).
    """

    def __init__(self, path: PathLike, options: Optional[ModelOptions] = None, **kwargs: Any) -> None:
        self._path = _fspath(path, "Model")
        if kwargs:
            if options is not None:
                raise TypeError("Model: give either options or keyword options, not both")
            options = ModelOptions(**kwargs)
        with opening_file(self._path):
            self._native = _core.Model(self._path, options._native if options is not None else None)

    def _describe(self) -> str:
        return f"Model({self._path!r})"

    @property
    def path(self) -> str:
        """The path the model was loaded from."""
        return self._path

    @property
    def inputs(self) -> List[TensorInfo]:
        """Regular (non-LoRA) inputs."""
        return [TensorInfo(n, dtype_name(d), _shape(s)) for n, d, s in self._n().inputs]

    @property
    def outputs(self) -> List[TensorInfo]:
        return [TensorInfo(n, dtype_name(d), _shape(s)) for n, d, s in self._n().outputs]

    @property
    def input_names(self) -> List[str]:
        return [i.name for i in self.inputs]

    @property
    def output_names(self) -> List[str]:
        return [o.name for o in self.outputs]

    @property
    def version(self) -> int:
        """The model version adapters record in ``model_version``: a stable fingerprint of the LoRA input
        signature (names, dtypes, fixed dims, rank axes), always in [2**30, 2**31). An adapter whose
        ``model_version`` lies in that range and differs is refused unless loaded with
        ``ignore_model_version=True``; a smaller non-zero value is its producer's own number (ONNX Runtime's
        format), checked only against a model that declares an ONNX ``model_version``."""
        return int(self._n().version)

    @property
    def batch_slots(self) -> BatchSlots:
        """BatchSlots(slots, resident): the slot table for per-row adapters; slots is 0 when the model is not
        prepared for batching (see :meth:`ModelOptions.set_batch_slots`)."""
        slots, resident = self._n().batch_slots
        return BatchSlots(int(slots), int(resident))

    @property
    def batch_slot_stats(self) -> BatchSlotStats:
        """BatchSlotStats(hits, misses, evictions) of the slot table since the model was created."""
        hits, misses, evictions = self._n().batch_slot_stats
        return BatchSlotStats(int(hits), int(misses), int(evictions))

    @property
    def session_runs(self) -> SessionRuns:
        """SessionRuns(lora, base): runs on the LoRA graph's session and on the base graph's since the model
        was created (see :meth:`ModelOptions.set_base_graph`)."""
        lora, base = self._n().session_runs
        return SessionRuns(int(lora), int(base))

    @property
    def lora_inputs(self) -> List[LoraInputInfo]:
        """The LoRA inputs adapters may set, in model order."""
        out = []
        for name, code, d0, d1, axis in self._n().lora_inputs:
            # the rank dim is 0 (any rank) except for quantized inputs, whose model fixes it
            shape = (int(d0) or None, int(d1)) if axis == 0 else (int(d0), int(d1) or None)
            out.append(
                LoraInputInfo(
                    name, dtype_name(code), shape, int(axis), "B" if axis == 0 else "A", int(d1 if axis == 0 else d0)
                )
            )
        return out

    def run(
        self,
        output_names: Optional[Sequence[str]],
        input_feed: Mapping[str, Any],
        run_options: Optional[RunOptions] = None,
        *,
        fill_defaults: bool = False,
    ) -> List[np.ndarray]:
        """Runs the model once, in onnxruntime's ``InferenceSession.run`` argument order.

        ``output_names``: names to fetch, None or [] for all outputs in model order. ``input_feed``:
        {name: array-like}; numpy arrays keep their dtype (a wrong one raises TypeMismatchError), other
        array-likes are converted to the input's declared dtype. LoRA inputs come from
        ``run_options``' active adapters (None = base model). Returns numpy arrays owning their memory.
        ``fill_defaults=True``: a decoder (builder/Olive model) fed only ``input_ids`` gets the other inputs
        of a first pass — a full ``attention_mask``, ``position_ids`` 0..seq-1 and empty past key/values
        (see ``multilora/_defaults.py``).
        """
        if not isinstance(input_feed, Mapping):
            raise TypeError(f"run: input_feed must be a mapping name -> array, not {type(input_feed).__name__}")
        if fill_defaults:
            from ._defaults import fill_decoder_defaults

            input_feed = fill_decoder_defaults(self, input_feed)
        native_opts = run_options._n() if run_options is not None else None
        names = None if not output_names else list(output_names)
        return list(self._n().run(names, dict(input_feed), native_opts))

    def __repr__(self) -> str:
        if self._native is None:
            return f"<Model {self._path!r} closed>"
        return f"<Model {self._path!r} inputs={self.input_names} lora_inputs={len(self._native.lora_inputs)} open>"


# ------------------------------------------------------------------------------------------------
# Adapters
# ------------------------------------------------------------------------------------------------


def _load_flags(replace: bool, ignore_model_version: bool, copy: bool = False) -> int:
    return (
        (_core.LOAD_REPLACE if replace else 0)
        | (_core.LOAD_IGNORE_MODEL_VERSION if ignore_model_version else 0)
        | (_core.LOAD_COPY if copy else 0)
    )


def _name(name: Any, what: str) -> Any:
    """An adapter name the C ABI can take: a str with a UTF-8 spelling (no lone surrogates)."""
    if isinstance(name, str):
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as e:
            _core.raise_status(1, f"{what}: adapter name {name!r} is not valid UTF-8 ({e.reason} at {e.start})")
    return name


def _bytes_like(data: Any, what: str) -> Any:
    if isinstance(data, (str, os.PathLike)):
        raise TypeError(f"{what}: data must be bytes-like (the file's contents), not a path; use load() for files")
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return data


class Adapter(_Native):
    """One adapter's contents: parameters, rank, versions and memory accounting (immutable).

    Obtained from :meth:`Adapters.get` (the version loaded under a name; it stays valid after unload
    or replace) or opened from a file with :meth:`Adapter.open`.
    """

    def __init__(self, native: Any, name: str) -> None:
        self._native = native
        self._name = name

    @classmethod
    def open(cls, path: PathLike) -> Adapter:
        """Opens an .onnx_adapter file without a model (mapped read-only and verified)."""
        p = _fspath(path, "Adapter.open")
        with opening_file(p):
            return cls(_core.Adapter.open(p), p)

    @classmethod
    def from_memory(cls, data: BytesLike, name: str = "<memory>") -> Adapter:
        """Opens an .onnx_adapter file's contents from a bytes-like object (copied)."""
        return cls(_core.Adapter.open_from_memory(_bytes_like(data, "Adapter.from_memory")), name)

    def _describe(self) -> str:
        return f"Adapter({self._name!r})"

    @property
    def name(self) -> str:
        """The name it is loaded under (or the file path for an opened file)."""
        return self._name

    @property
    def rank(self) -> int:
        """Largest LoRA rank among its parameters (0 if none)."""
        return int(self._n().rank)

    @property
    def format_version(self) -> int:
        return int(self._n().versions[0])

    @property
    def adapter_version(self) -> int:
        return int(self._n().versions[1])

    @property
    def model_version(self) -> int:
        return int(self._n().versions[2])

    @property
    def bytes_mapped(self) -> int:
        """Bytes of the file mapping (0 when loaded from memory)."""
        return int(self._n().bytes[0])

    @property
    def bytes_copied(self) -> int:
        """Bytes the library had to copy (memory-loaded buffers, misaligned parameters)."""
        return int(self._n().bytes[1])

    @property
    def parameter_names(self) -> List[str]:
        """Parameter names in file order."""
        return list(self._n().param_names)

    @property
    def params(self) -> Dict[str, ParamInfo]:
        """{name: ParamInfo(dtype, shape, nbytes)} in file order, without copying data."""
        return {n: ParamInfo(dtype_name(d), tuple(int(x) for x in s), int(b)) for n, d, s, b in self._n().param_infos}

    @property
    def dtypes(self) -> Dict[str, str]:
        """{name: dtype name} ("bfloat16" included) in file order."""
        return {n: p.dtype for n, p in self.params.items()}

    @property
    def parameters(self) -> Dict[str, np.ndarray]:
        """{name: numpy copy} in file order (bfloat16 as ml_dtypes.bfloat16)."""
        native = self._n()
        out: Dict[str, np.ndarray] = {}
        for i in range(len(native.param_names)):
            name, _, array = native.param(i)
            out[name] = array
        return out

    def __repr__(self) -> str:
        if self._native is None:
            return f"<Adapter {self._name!r} closed>"
        return f"<Adapter {self._name!r} rank={self.rank} params={len(self._native.param_names)} open>"


class Adapters(_Native):
    """A registry of named adapters validated against one model (mirrors onnxruntime-genai's Adapters).

    ``unload`` never breaks a holder: run options that activated an adapter keep using the version
    they resolved; the memory goes when the last holder releases it.
    """

    def __init__(self, model: Model) -> None:
        if not isinstance(model, Model):
            raise TypeError(f"Adapters: model must be a multilora.Model, not {type(model).__name__}")
        self._model_path = model.path
        self._native = _core.Adapters(model._n())

    def _describe(self) -> str:
        return f"Adapters(model={self._model_path!r})"

    def load(
        self,
        path: PathLike,
        name: str,
        *,
        replace: bool = False,
        ignore_model_version: bool = False,
        copy: bool = False,
    ) -> None:
        """Maps, verifies and validates an .onnx_adapter file against the model and names it.

        A directory is loaded as a PEFT LoRA folder (adapter_config.json + adapter_model.safetensors):
        tensors are resolved to the model's LoRA inputs, transposed, the LoRA scale folded into B and the
        values converted to the model's LoRA dtype (see docs/design.md §4); anything unsupported is an error.

        ``replace``: replace an adapter already loaded under ``name`` (holders keep the old one);
        otherwise that raises AlreadyExistsError. ``ignore_model_version``: skip the model_version
        check (dtypes and shapes are always checked).

        File lifetime: the file is memory-mapped and read in place while the adapter is in use. Replace
        it by writing a new file and renaming it over the path; never truncate or rewrite it in place
        (a run reading past the end of a truncated mapped file dies with SIGBUS). ``copy=True`` reads
        the file into private memory instead, for files that may change under a running process.
        """
        p = _fspath(path, "Adapters.load")
        flags = _load_flags(replace, ignore_model_version, copy)
        with opening_file(p, folder_files=("adapter_config.json", "adapter_model.safetensors")):
            self._n().load(p, _name(name, "Adapters.load"), flags)

    def load_from_memory(
        self, data: BytesLike, name: str, *, replace: bool = False, ignore_model_version: bool = False
    ) -> None:
        """As :meth:`load`, from the bytes of an .onnx_adapter file (copied)."""
        self._n().load_from_memory(
            _bytes_like(data, "Adapters.load_from_memory"),
            _name(name, "Adapters.load_from_memory"),
            _load_flags(replace, ignore_model_version),
        )

    def unload(self, name: str) -> None:
        """Removes a name at once (AdapterNotFoundError if it is not loaded)."""
        with adapter_lookup():
            self._n().unload(_name(name, "Adapters.unload"))

    def names(self) -> List[str]:
        """Loaded names, sorted."""
        return list(self._n().names())

    def get(self, name: str) -> Adapter:
        """The adapter loaded under ``name`` (AdapterNotFoundError if none); close it when done."""
        with adapter_lookup():
            return Adapter(self._n().get(_name(name, "Adapters.get")), name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._n().names()

    def __len__(self) -> int:
        return len(self._n().names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._n().names())

    def __repr__(self) -> str:
        if self._native is None:
            return f"<Adapters model={self._model_path!r} closed>"
        return f"<Adapters model={self._model_path!r} names={self.names()} open>"


# ------------------------------------------------------------------------------------------------
# Run options
# ------------------------------------------------------------------------------------------------


def _names_weights(
    names: Union[str, Sequence[str], None], weights: Union[float, Sequence[float], None]
) -> Tuple[List[str], Optional[List[float]]]:
    if names is None:
        names_list: List[str] = []
    elif isinstance(names, str):
        names_list = [names]
    else:
        names_list = list(names)
    for n in names_list:
        _name(n, "set_active_adapters")
    if weights is None:
        return names_list, None
    if isinstance(weights, (int, float, np.floating, np.integer)):
        return names_list, [float(weights)]
    return names_list, [float(w) for w in weights]


def _rows_weights(
    rows: Sequence[Union[str, Sequence[str]]], weights: Optional[Sequence[Sequence[float]]]
) -> Tuple[List[List[str]], Optional[List[List[float]]]]:
    """Per-row adapter sets as lists (a str row is one name) and their weights as floats (None = all 1.0)."""
    if isinstance(rows, str):
        raise TypeError("set_active_adapters_per_row: rows must be a sequence of rows (lists of names), not a str")
    rows_list = [[row] if isinstance(row, str) else list(row) for row in rows]
    for row in rows_list:
        for n in row:
            _name(n, "set_active_adapters_per_row")
    weights_list = None if weights is None else [[float(w) for w in row] for row in weights]
    return rows_list, weights_list


class AdapterSetMethods(_Native):
    """The adapter-set methods RunOptions, GeneratorParams and Generator share (one implementation; their
    native objects take the same arguments). For run options: the set the next runs use; for params: the set
    generators start with; for a generator: a switch between steps (tokens already processed keep the KV
    cache computed with the previous set). Every call resolves the names at once: a later unload or replace
    does not change what the object runs with. AdapterNotFoundError names an adapter that is not loaded."""

    _active: List[Tuple[str, float]] = []

    def set_active_adapters(
        self,
        adapters: Optional[Adapters],
        names: Union[str, Sequence[str], None],
        weights: Union[float, Sequence[float], None] = None,
    ) -> None:
        """One set for every row: ``names`` of ``adapters`` with ``weights`` (default all 1.0); [] = the base
        model. Several adapters apply the weighted sum of their deltas exactly."""
        names_list, weights_list = _names_weights(names, weights)
        native_adapters = adapters._n() if adapters is not None else None
        with adapter_lookup():
            self._n().set_active_adapters(native_adapters, names_list, weights_list)
        w = weights_list if weights_list is not None else [1.0] * len(names_list)
        self._active = list(zip(names_list, w))

    def set_active_adapter(self, adapters: Adapters, name: str) -> None:
        """Activates the single adapter ``name`` (onnxruntime-genai's spelling)."""
        self.set_active_adapters(adapters, [name])

    def set_active_adapters_per_row(
        self,
        adapters: Adapters,
        rows: Sequence[Sequence[str]],
        weights: Optional[Sequence[Sequence[float]]] = None,
    ) -> None:
        """One adapter set per batch row (``[]`` = the base model for that row), all served by one Run.

        Needs a model rewritten once with ``multilora prepare-batching`` (for generation: the folder's
        model.onnx). ``weights``, if given, holds one list per row matching its names (default all 1.0). Each
        row's output equals that row run alone with its own set. The row count must match the batch: every run
        with these run options must have ``len(rows)`` rows; for generation it must equal the ``batch_size``
        search option when a Generator is made from params (else InvalidArgumentError), and a generator's batch
        size when switching. Replaces any set given by :meth:`set_active_adapters`.
        """
        rows_list, weights_list = _rows_weights(rows, weights)
        with adapter_lookup():
            self._n().set_active_adapters_per_row(adapters._n(), rows_list, weights_list)
        self._active = []
        seen = set()
        for i, row in enumerate(rows_list):
            for j, name in enumerate(row):
                w = weights_list[i][j] if weights_list is not None else 1.0
                if (name, w) not in seen:
                    seen.add((name, w))
                    self._active.append((name, w))

    def clear_active_adapters(self) -> None:
        """Back to the base model (onnxruntime-genai has no such call)."""
        self.set_active_adapters(None, [])

    @property
    def active_adapters(self) -> List[Tuple[str, float]]:
        """[(name, weight)] as last set through this object (per-row sets: each distinct pair once)."""
        self._n()
        return list(self._active)


class RunOptions(AdapterSetMethods):
    """Per-run settings: chiefly the active adapter set (empty = the base model)."""

    def __init__(self) -> None:
        self._native = _core.RunOptions()
        self._active = []

    def _describe(self) -> str:
        return "RunOptions"

    @property
    def active_count(self) -> int:
        return int(self._n().active_count)

    def __repr__(self) -> str:
        names = [n for n, _ in self._active]
        weights = [w for _, w in self._active]
        shown = f" active={names}" + (f" weights={weights}" if any(w != 1.0 for w in weights) else "")
        return f"<RunOptions{shown} {self._state()}>"


# ------------------------------------------------------------------------------------------------
# Adapter files
# ------------------------------------------------------------------------------------------------


class AdapterFile(NamedTuple):
    """An .onnx_adapter file read into memory by :func:`read_adapter`."""

    parameters: Dict[str, np.ndarray]  # name -> numpy (bfloat16 as ml_dtypes.bfloat16), file order
    dtypes: Dict[str, str]  # name -> dtype name
    adapter_version: int
    model_version: int
    format_version: int


def read_adapter(path: Union[PathLike, BytesLike]) -> AdapterFile:
    """Reads an .onnx_adapter file (or its bytes) with multilora's verifying reader; copies the data."""
    if isinstance(path, (str, os.PathLike)):
        adapter = Adapter.open(path)
    else:
        adapter = Adapter.from_memory(path)
    with adapter:
        return AdapterFile(
            parameters=adapter.parameters,
            dtypes=adapter.dtypes,
            adapter_version=adapter.adapter_version,
            model_version=adapter.model_version,
            format_version=adapter.format_version,
        )


def write_adapter(
    path: PathLike,
    parameters: Mapping[str, Any],
    adapter_version: int = 0,
    model_version: int = 0,
    *,
    dtypes: Optional[Mapping[str, Any]] = None,
    model: Optional[Model] = None,
) -> None:
    """Writes {name: array-like} as an .onnx_adapter file that onnxruntime loads (written atomically).

    Each array keeps its numpy dtype; ``dtypes`` may give a parameter another element type of the
    same size to reinterpret its bytes as (e.g. ``{"x": "bfloat16"}`` for uint16 raw bits).
    ml_dtypes.bfloat16 arrays are written as bfloat16 by themselves. ``model``: record that model's
    version (``model.version``) as ``model_version``, so loading into another model is refused.
    """
    p = _fspath(path, "write_adapter")
    if model is not None:
        if not isinstance(model, Model):
            raise TypeError(f"write_adapter {p!r}: model must be a multilora.Model, not {type(model).__name__}")
        if model_version not in (0, model.version):
            raise ValueError(
                f"write_adapter {p!r}: model_version {model_version} contradicts model.version {model.version}"
            )
        model_version = model.version
    if not isinstance(parameters, Mapping):
        raise TypeError(f"write_adapter: parameters must be a mapping name -> array, not {type(parameters).__name__}")
    overrides = dict(dtypes or {})
    unknown = sorted(set(overrides) - set(parameters))
    if unknown:
        raise ValueError(f"write_adapter {p!r}: dtypes names parameters that are not given: {unknown}")
    items = []
    for name, value in parameters.items():
        if not isinstance(name, str):
            raise TypeError(f"write_adapter {p!r}: parameter names must be str, not {type(name).__name__}")
        code = dtype_code(overrides[name]) if name in overrides else None
        items.append((name, value, code))
    _core.write_adapter(p, items, int(adapter_version), int(model_version))


def set_global_threads(intra_op_threads: int, allow_spinning: bool) -> None:
    """How ONNX Runtime's intra-op threads are shared by every model of the process; only before the first
    model (InUseError after). ``intra_op_threads``: -1 = a pool per session (sized by each model's
    ``intra_op_threads`` / genai_config.json), 0 = one global pool of ONNX Runtime's default size (the default),
    n = one global pool of n threads. ``allow_spinning``: whether idle workers spin before sleeping (default
    True; False is faster when other busy processes share the cores). A model with its own
    ``intra_op_threads`` keeps a pool of its own."""
    _core.set_global_threads(operator.index(intra_op_threads), bool(allow_spinning))


def ort_info() -> OrtInfo:
    """The ONNX Runtime library multilora uses (loads it if needed): OrtInfo(path, version)."""
    path, version = _core.ort_info()
    return OrtInfo(path, version)
