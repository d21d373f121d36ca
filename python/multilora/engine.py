"""Engine: continuous batching of generation requests, each with its own adapters and search options.

    import multilora as ml
    model = ml.Model("phi-lora-batching/")       # a GenAI folder prepared with `multilora prepare-batching`
    adapters = ml.Adapters(model)
    adapters.load("sql.onnx_adapter", "sql")
    with ml.Engine(model, max_batch_size=16) as engine:     # starts its worker thread
        p = ml.GeneratorParams(model)
        p.set_search_options(max_length=64, do_sample=False)
        p.set_active_adapters(adapters, ["sql"])            # [] = base model, several = weighted mix
        req = engine.submit(p, prompt_ids)                  # any thread; returns at once
        for tok in req:                                     # blocking iterator over new token ids
            ...
        req.finish_reason, req.usage                        # "eos", Usage(prompt_tokens=..., ...)
        async for tok in req.stream(): ...                  # asyncio: waits in a thread, not on the loop

The model is a GenAI folder whose decoder has the layout of onnxruntime-genai's model builder
(GroupQueryAttention, no ``position_ids``). The engine feeds one adapter slot per row, so it runs a copy of the
decoder rewritten by ``multilora prepare-batching``: give it a prepared folder, or a plain one and it prepares a
copy once into a cache directory (``$MULTILORA_CACHE_DIR``, else ``~/.cache/multilora``; ``prepared/<key>`` where
the key hashes the folder's path, its files' sizes and modification times, the prepared layout's version and
``lora_dtype``; written atomically, reused after; the copy has the base graph, so steps with no adapter cost
what the model without LoRA costs). ``lora_dtype`` (``"auto"``, ``"float32"``, ``"float16"``, ``"bfloat16"``,
``"int8"``) is the slot dtype of that copy (``prepare-batching --lora-dtype``): 16-bit slots halve the adapter
bytes each step reads; float32 adapters are rounded to them, float16/bfloat16 ones kept exactly; int8 slots
(block-scaled) read ~0.3x, float adapters quantized, int4 ones exact (docs/design.md §6). The
params and adapters of the plain model are used as they are: the engine builds each adapter set once for its
copy from the same adapters and weights. Preparing needs the ``onnx`` package
(``pip install 'multilora[tools]'``). In C, C#, Java the engine takes a prepared model only (the rewrite is
Python code) and refuses a plain one with a message naming the tool.

A request copies its params' search options (``max_length``, ``max_new_tokens``, sampling, ``seed``), stop
tokens and adapter set when submitted, and keeps the adapters alive until it finishes. Every chosen token is
streamed, including the eos or stop token that ends it. ``finish_reason`` is one of ``"length"``, ``"eos"``,
``"stop"``, ``"cancelled"``, ``"error"`` (``None`` while running). Blocking calls release the GIL; the
engine's worker runs native code only.

``Engine(model, worker=False)`` has no thread: call ``engine.step()`` to advance it (deterministic, for tests
and hosts that schedule themselves); iterating a request of such an engine steps it until the request has
tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Iterator, List, NamedTuple, Optional, Sequence, Union

import numpy as np

from . import _core
from ._api import Model, _Native
from ._errors import ClosedError, error_from_status

__all__ = ["Engine", "Request", "Usage", "EngineStats", "FINISH_REASONS"]

FINISH_REASONS = {0: None, 1: "length", 2: "eos", 3: "stop", 4: "cancelled", 5: "error"}


class Usage(NamedTuple):
    """Token counts and latencies of a request (seconds; ``ttft`` is ``None`` before the first token)."""

    prompt_tokens: int
    generated_tokens: int
    queue_time: float
    ttft: Optional[float]


class EngineStats(NamedTuple):
    queued: int
    running: int
    finished: int
    steps: int
    decode_tokens: int
    prefill_tokens: int


def _prompt_list(prompt: Any) -> List[int]:
    arr = np.asarray(prompt)
    if arr.ndim != 1:
        raise ValueError(f"a prompt is a 1-D sequence of token ids, not an array of shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"prompt token ids must be integers, not {arr.dtype}")
    return [int(t) for t in arr.tolist()]


_POOL: Optional[ThreadPoolExecutor] = None
_POOL_LOCK = threading.Lock()


def _stream_pool() -> ThreadPoolExecutor:
    """Threads that wait for tokens on behalf of asyncio streams (64: blocked native waits cost no CPU)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="multilora-stream")
        return _POOL


class Request(_Native):
    """One submitted request. Iterate it (blocking) or ``stream()`` it (asyncio) for new token ids; both
    read from one queue, so use one of them. ``close()`` releases it (cancelling it if unfinished)."""

    def __init__(self, native: Any, params: Any, engine: Optional[Engine] = None) -> None:
        self._native = native
        self._params = params  # the Python params object stays alive as long as the request
        self._engine = engine  # set for engines without a worker: iterating steps them

    def _describe(self) -> str:
        return "Request"

    def read(self, timeout: Optional[float] = None, max_tokens: int = 256) -> List[int]:
        """New token ids: waits up to ``timeout`` seconds (None = until a token or the end, 0 = poll).
        Returns [] on timeout and once the request finished and everything was read (see is_done())."""
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        tokens, _more = self._n().read(ms, max_tokens)
        return list(tokens)

    def __iter__(self) -> Iterator[int]:
        native = self._n()
        engine = self._engine
        while True:
            if engine is not None:  # no worker: step the engine until this request has tokens or ends
                tokens, more = native.read(0, 256)
                while not tokens and more:
                    engine.step()
                    tokens, more = native.read(0, 256)
            else:
                tokens, more = native.read(-1, 256)
            yield from tokens
            if not more:
                return

    async def stream(self, wait: float = 0.25) -> AsyncIterator[int]:
        """Async iterator over new token ids. Waiting happens in a thread of a shared pool (the native read
        releases the GIL and returns as soon as a token arrives), never on the event loop; each wait lasts at
        most ``wait`` seconds so a cancelled task frees its thread soon. For an engine without a worker, the
        waits step the engine."""
        loop = asyncio.get_running_loop()
        native = self._n()
        engine = self._engine
        ms = max(1, int(wait * 1000))
        while True:
            tokens, more = native.read(0, 256)
            if not tokens and more:
                if engine is not None:
                    await loop.run_in_executor(_stream_pool(), engine.step)
                    continue
                tokens, more = await loop.run_in_executor(_stream_pool(), native.read, ms, 256)
            for t in tokens:
                yield t
            if not more:
                return

    def cancel(self) -> bool:
        """Cancels the request (its row is freed at the next step). True if this call cancelled it; False if
        it had finished or was cancelled already (cancelling twice is harmless)."""
        return bool(self._n().cancel())

    def is_done(self) -> bool:
        """True once the request finished (tokens may still be unread)."""
        return bool(self._n().finish_reason() != 0)

    @property
    def finish_reason(self) -> Optional[str]:
        """None while running, else "length", "eos", "stop", "cancelled" or "error"."""
        return FINISH_REASONS.get(int(self._n().finish_reason()), "error")

    @property
    def usage(self) -> Usage:
        prompt, generated, queue, ttft = self._n().usage()
        return Usage(int(prompt), int(generated), float(queue), None if ttft < 0 else float(ttft))

    @property
    def error(self) -> Optional[Exception]:
        """The exception a failed request carries (ClosedError when the engine closed under it), else None."""
        native = self._n()
        status = int(native.error_status())
        if status == 0:
            return None
        return error_from_status(status, _core.status_name(status), native.error_message())

    def tokens(self) -> List[int]:
        """Blocks until the request finishes; every token not read yet."""
        return list(iter(self))

    def __repr__(self) -> str:
        if self.closed:
            return "Request(closed)"
        return f"Request(finish_reason={self.finish_reason!r}, usage={self.usage})"


def _cache_dir() -> str:
    root = os.environ.get("MULTILORA_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "multilora")
    return os.path.join(root, "prepared")


# The prepared copy's layout; part of the cache key, so a copy prepared by an older version is prepared again
# (2: the copy has the base graph model.base.onnx and one external data file; 3: the fused op takes in each
# pair's Add; 4: an attention's q/k/v MatMulNBits packed into one).
_PREPARE_FORMAT = 4


def _folder_key(folder: str, lora_dtype: str = "auto") -> str:
    """A key that changes when the folder's files change (its real path and every file's name, size, mtime),
    when the prepared copy's layout does (_PREPARE_FORMAT) or with the slot dtype asked for."""
    h = hashlib.sha256(f"multilora-prepared-{_PREPARE_FORMAT}\0".encode())
    h.update(os.path.realpath(folder).encode("utf-8", "surrogateescape"))
    if lora_dtype != "auto":
        h.update(f"\0lora_dtype={lora_dtype}".encode())
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for f in sorted(files):
            st = os.stat(os.path.join(root, f))
            rel = os.path.relpath(os.path.join(root, f), folder)
            h.update(f"\0{rel}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:24]


def _prepared_copy(model: Model, lora_dtype: str = "auto") -> Model:
    """``model`` when it is prepared for per-row adapters (or is no GenAI folder: the native engine then says
    what is wrong); otherwise the cached prepared copy of its folder (slots in ``lora_dtype``), made now if
    missing."""
    from .prepare_batching import LORA_DTYPES

    if lora_dtype not in LORA_DTYPES:
        from ._errors import InvalidArgumentError

        raise InvalidArgumentError(f"lora_dtype must be one of {', '.join(LORA_DTYPES)} (got {lora_dtype!r})")
    folder = model.path
    if model.batch_slots.slots:
        declared = {i.dtype for i in model.lora_inputs}
        if lora_dtype != "auto" and declared != {lora_dtype}:
            from ._errors import InvalidArgumentError

            raise InvalidArgumentError(
                f"ml.Engine: model {folder!r} is prepared already with {', '.join(sorted(declared))} slots, not "
                f"lora_dtype={lora_dtype!r}; give the unprepared folder or prepare it again with "
                f"`multilora prepare-batching --lora-dtype {lora_dtype}`"
            )
        return model
    if not os.path.isfile(os.path.join(folder, "genai_config.json")):
        return model
    try:
        from .prepare_batching import prepare_batching
    except ImportError as e:  # onnx missing
        raise ImportError(
            f"ml.Engine: model folder {folder!r} is not prepared for per-row adapters and preparing it needs the "
            f"onnx package ({e}); pip install 'multilora[tools]', or run `multilora prepare-batching` elsewhere"
        ) from e
    dst = os.path.join(_cache_dir(), _folder_key(folder, lora_dtype))
    if not os.path.isfile(os.path.join(dst, "genai_config.json")):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".preparing-", dir=os.path.dirname(dst))
        try:
            prepare_batching(folder, os.path.join(tmp, "m"), lora_dtype=lora_dtype)
            try:
                os.replace(os.path.join(tmp, "m"), dst)
            except OSError:  # another process prepared it meanwhile
                if not os.path.isfile(os.path.join(dst, "genai_config.json")):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return Model(dst)


class Engine(_Native):
    """Continuous batching over one model prepared with ``multilora prepare-batching``.

    ``max_batch_size``: KV rows (requests decoding together); ``max_tokens_per_step``: the token budget of
    one step (one per decoding row, the rest for prompt chunks); ``max_queue``: waiting requests before
    submit raises BusyError; ``worker``: False for no thread (call ``step()``); ``lora_dtype``: the slot dtype
    when the engine prepares a copy of a plain folder (``"auto"``, ``"float32"``, ``"float16"``,
    ``"bfloat16"``, ``"int8"``; a prepared model must already have it)."""

    def __init__(
        self,
        model: Model,
        max_batch_size: int = 16,
        *,
        max_tokens_per_step: int = 64,
        max_queue: int = 1024,
        worker: bool = True,
        lora_dtype: str = "auto",
    ) -> None:
        for name, value, low in (
            ("max_batch_size", max_batch_size, 1),
            ("max_tokens_per_step", max_tokens_per_step, 1),
            ("max_queue", max_queue, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if value < low:
                from ._errors import InvalidArgumentError

                raise InvalidArgumentError(f"{name} must be >= {low} (got {value})")
        options = _core.EngineOptions()
        options.set_max_batch_size(int(max_batch_size))
        options.set_max_tokens_per_step(int(max_tokens_per_step))
        options.set_max_queue(int(max_queue))
        options.set_worker(bool(worker))
        self._model = model
        self._model_path = model.path
        self._worker = bool(worker)
        self._runs = _prepared_copy(model, lora_dtype)  # what the native engine runs (model itself when prepared)
        self._native = _core.Engine(self._runs._n(), options)

    def _describe(self) -> str:
        return f"Engine(model={self._model_path!r})"

    def submit(self, params: Any, prompt: Any) -> Request:
        """Queues one prompt (token ids) with the params' options and adapters; returns at once.
        Raises ClosedError after close(), BusyError when the queue is full, InvalidArgumentError /
        ShapeMismatchError for a bad prompt or params."""
        native = self._native
        if native is None:
            raise ClosedError(f"{self._describe()} is closed")
        ids = _prompt_list(prompt)
        return Request(native.submit(params._n(), ids), params, None if self._worker else self)

    def step(self) -> bool:
        """One step of an engine created with ``worker=False``; True while requests are queued or running.
        Raises ClosedError after close()/shutdown()."""
        native = self._native
        if native is None:
            raise ClosedError(f"{self._describe()} is closed")
        return bool(native.step())

    def shutdown(self) -> None:
        """Closes the engine without releasing it: every queued and running request finishes "cancelled" with
        ClosedError, the worker stops, later submits and steps raise ClosedError; stats() still works."""
        self._n().shutdown()

    def stats(self) -> EngineStats:
        return EngineStats(*(int(v) for v in self._n().stats()))

    def generate(self, prompts: Sequence[Any], params_list: Union[Any, Sequence[Any]]) -> List[List[int]]:
        """Offline batch: submits every prompt (with its params, or one params object for all), waits for all,
        returns each request's new token ids in order. Drives the engine itself when it has no worker."""
        if not isinstance(params_list, (list, tuple)):
            params_list = [params_list] * len(prompts)
        if len(params_list) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(params_list)} params")
        requests = [self.submit(p, prompt) for prompt, p in zip(prompts, params_list)]
        try:
            return [r.tokens() for r in requests]
        finally:
            for r in requests:
                r.close()

    def close(self) -> None:
        """Cancels every queued and running request (finish_reason "cancelled", error ClosedError) and stops the
        worker; later submits raise ClosedError. Idempotent."""
        native, self._native = self._native, None
        if native is not None:
            native.shutdown()
            native.close()
        if self._runs is not self._model:
            self._runs.close()  # the prepared copy this engine opened (running requests keep it alive natively)

    def __repr__(self) -> str:
        if self.closed:
            return f"{self._describe()[:-1]}, closed)"
        return f"{self._describe()[:-1]}, {self.stats()})"
