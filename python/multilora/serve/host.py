"""The serving core: one model, its adapter registry, tokenizer, chat template and request engine.

``ModelHost.generate(kind, body)`` turns an OpenAI request body into an engine request and yields *events* that the
HTTP layer (app.py, or the Ray Serve ingress) turns into a response:

- ``("error", status, body)``: an error in OpenAI's shape (only ever the first event, or the last one of a stream);
- ``("response", body)``: the whole non-streaming response;
- ``("chunk", body)``: one server-sent event of a streaming response (the caller adds ``data: [DONE]``).

Closing the event generator early (the client went away) cancels the engine request, which frees its row at the
engine's next step. Everything runs on the event loop thread except the engine itself, whose worker generates
without the GIL; token streams are awaited with the engine's ``Request.stream()``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, List, Optional, Sequence, Tuple, Union

from pydantic import ValidationError

from .._chat import ChatTemplate, TemplateError, load_chat_template
from .metrics import ServerMetrics
from .protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    LoadAdapterRequest,
    UnloadAdapterRequest,
    error_body,
)

__all__ = [
    "ServeConfig",
    "ModelHost",
    "Event",
    "validation_message",
    "adapter_names",
    "resolve_adapter_path",
    "check_loading_allowed",
]

log = logging.getLogger("multilora.serve")

Event = Tuple[Any, ...]

_MAX_STOPS = 16
_MAX_STOP_CHARS = 256


@dataclass
class ServeConfig:
    """What ``multilora serve`` was started with."""

    model_dir: str
    adapters: Dict[str, str] = field(default_factory=dict)
    model_name: Optional[str] = None  # the base model's name in "model"; default: the folder's name
    max_batch_size: int = 16
    max_queue: Optional[int] = None
    api_key: Optional[str] = None
    adapter_root: Optional[str] = None
    allow_adapter_loading: bool = False
    max_body_bytes: int = 1 << 20

    @property
    def base_name(self) -> str:
        return self.model_name or os.path.basename(os.path.normpath(self.model_dir)) or "base"


def validation_message(err: ValidationError) -> Tuple[str, Optional[str]]:
    """A one-line message and the offending parameter for a pydantic error (the first one)."""
    first = err.errors()[0] if err.errors() else {}
    loc = ".".join(str(p) for p in first.get("loc", ()))
    msg = first.get("msg", "invalid request")
    if first.get("type") == "extra_forbidden":
        msg = "unknown field"
    return (f"{loc}: {msg}" if loc else msg), (str(first["loc"][0]) if first.get("loc") else None)


def check_loading_allowed(config: ServeConfig) -> None:
    if not config.allow_adapter_loading:
        raise APIError(
            404, "adapter loading is off (start the server with --allow-adapter-loading)", type="not_found_error"
        )


def unknown_adapter(name: str, param: str) -> APIError:
    return APIError(
        404, f"the model '{name}' does not exist", type="not_found_error", param=param, code="model_not_found"
    )


def adapter_names(
    model: str, adapters: Any, base_name: str, known: Any, models: Any = None
) -> Tuple[List[str], Optional[List[float]]]:
    """The adapter set a request asks for: ``adapters`` (a list of AdapterRef) if given, else ``model`` ([] for the
    base model). APIError 404 for an adapter not in ``known`` or a model name neither the base's nor in ``models``
    (default: ``known``), 400 for a name given twice."""
    if model != base_name and model not in (known if models is None else models):
        raise unknown_adapter(model, "model")
    if adapters is None:
        return ([] if model == base_name else [model]), None
    names = [a.name for a in adapters]
    if len(set(names)) != len(names):
        raise APIError(400, "an adapter is named twice in 'adapters'", param="adapters")
    for name in names:
        if name not in known:
            raise unknown_adapter(name, "adapters")
    return names, [float(a.weight) for a in adapters]


def resolve_adapter_path(root: Optional[str], path: str) -> str:
    """The real path of ``path`` (relative paths are taken under ``root``) if it lies inside ``root`` once every
    symlink is resolved; APIError 400 otherwise (climbing out with .., an absolute path elsewhere, a link that leads
    out), 404 when nothing is there."""
    if not root:
        raise APIError(400, "no --adapter-root was given, so no path is allowed", param="lora_path")
    real_root = os.path.realpath(root)
    candidate = path if os.path.isabs(path) else os.path.join(real_root, path)
    real = os.path.realpath(candidate)
    try:
        inside = os.path.commonpath([real_root, real]) == real_root and real != real_root
    except ValueError:
        inside = False
    if not inside:
        raise APIError(400, "lora_path is outside the adapter root", param="lora_path")
    if not os.path.exists(real):
        raise APIError(
            404,
            f"no adapter at lora_path '{path}'",
            type="not_found_error",
            param="lora_path",
            code="adapter_not_found",
        )
    return real


def _read_genai_config(folder: str) -> Dict[str, Any]:
    try:
        with open(os.path.join(folder, "genai_config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        return cfg if isinstance(cfg, dict) else {}
    except (OSError, ValueError):
        return {}


class _Detokenizer:
    """Token ids -> text pieces whose concatenation is the decoded continuation (in the context of the prompt's last
    tokens, so word-joining spaces come out as they do in the whole text); stop strings end the text before them.

    A piece ending in an incomplete character, or in a possible beginning of a stop string, is held back until the next
    token decides it."""

    def __init__(self, tokenizer: Any, prompt: Sequence[int], skip: Sequence[int], stops: Sequence[str]) -> None:
        self._decode = tokenizer.decode
        self._ids: List[int] = [int(t) for t in prompt[-6:]]
        self._prefix = 0
        self._read = len(self._ids)
        self._skip = set(int(t) for t in skip)
        self._stops = [s for s in stops if s]
        self._longest = max((len(s) for s in self._stops), default=0)
        self.text = ""  # decoded so far (up to a stop string)
        self.sent = 0  # characters of text handed out
        self.stopped = False

    def _grow(self, final: bool) -> None:
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if not final and (len(after) <= len(before) or after.endswith("\ufffd")):
            return
        piece = after[len(before) :] if after.startswith(before) else after
        self._prefix, self._read = self._read, len(self._ids)
        self.text += piece

    def _release(self, final: bool) -> str:
        if self._stops:
            start = max(0, self.sent - self._longest)
            hits = [i for i in (self.text.find(s, start) for s in self._stops) if i >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                self.stopped = True
                final = True
            if not final:
                hold = 0
                tail = self.text[self.sent :]
                for s in self._stops:
                    for k in range(min(len(s) - 1, len(tail)), hold, -1):
                        if tail.endswith(s[:k]):
                            hold = k
                            break
                out = self.text[self.sent : len(self.text) - hold]
                self.sent += len(out)
                return out
        out = self.text[self.sent :]
        self.sent = len(self.text)
        return out

    def add(self, token: int) -> str:
        if self.stopped or int(token) in self._skip:
            return ""
        self._ids.append(int(token))
        self._grow(final=False)
        return self._release(final=False)

    def finish(self) -> str:
        if not self.stopped and self._read < len(self._ids):
            self._grow(final=True)
        return "" if self.stopped and self.sent >= len(self.text) else self._release(final=True)


def _finish_reason(value: Any) -> str:
    """The engine's finish reason (a name or a number) -> "length" / "stop" / "cancelled" / "error"."""
    names = {0: "none", 1: "length", 2: "eos", 3: "stop", 4: "cancelled", 5: "error"}
    if isinstance(value, int) and not isinstance(value, bool):
        name = names.get(int(value), "error")
    else:
        name = str(getattr(value, "name", value) or "none").lower()
        name = name.rsplit(".", 1)[-1].replace("finish_", "")
    if name in ("eos", "stop"):
        return "stop"
    return name


def _engine_errors() -> Tuple[Tuple[type, ...], Tuple[type, ...]]:
    import multilora as ml

    busy = tuple(c for c in (getattr(ml, "BusyError", None),) if isinstance(c, type))
    closed = tuple(c for c in (getattr(ml, "ClosedError", None),) if isinstance(c, type))
    return busy, closed


@dataclass
class _Flight:
    """One request on its way through generate()."""

    label: str = "unknown"  # the metrics label: the request's model name once it is known
    req: Any = None
    stops: List[str] = field(default_factory=list)
    ids: List[int] = field(default_factory=list)
    params: Any = None
    engine_req: Any = None
    phase: str = "waiting"  # then "running" from the first token
    out_ids: List[int] = field(default_factory=list)
    status: int = 200
    answered: bool = False


class ModelHost:
    """One model served: registry, tokenizer, chat template, engine and metrics."""

    def __init__(self, config: ServeConfig, engine_factory: Any = None) -> None:
        import multilora as ml

        self.config = config
        self.base_name = config.base_name
        self._ml = ml
        self.model = ml.Model(config.model_dir)
        self.registry = ml.Adapters(self.model)
        self._paths: Dict[str, str] = {}
        # names a request may give as "model" beyond the loaded adapters (a Ray replica: the ingress's catalog)
        self.catalog: Optional[Dict[str, str]] = None
        self.created = int(time.time())
        try:
            for name, path in config.adapters.items():
                if name == self.base_name:
                    raise ValueError(f"adapter name '{name}' is the base model's name (see --model-name)")
                self.registry.load(path, name)
                self._paths[name] = path
            self.tokenizer = ml.Tokenizer(self.model)
            self.template: Optional[ChatTemplate] = load_chat_template(config.model_dir)
            cfg = _read_genai_config(config.model_dir).get("model", {})
            self.context_length = int(cfg.get("context_length") or 0) or None
            self.vocab_size = int(cfg.get("vocab_size") or 0) or self.tokenizer.vocab_size
            eos = cfg.get("eos_token_id", [])
            self.eos_ids = [int(e) for e in (eos if isinstance(eos, list) else [eos])]
            kwargs: Dict[str, Any] = {"max_batch_size": int(config.max_batch_size)}
            if config.max_queue is not None:
                kwargs["max_queue"] = int(config.max_queue)
            factory = engine_factory if engine_factory is not None else ml.Engine
            self.engine = factory(self.model, **kwargs)
        except BaseException:
            self.registry.close()
            self.model.close()
            raise
        self._busy_errors, self._closed_errors = _engine_errors()
        self._lock = threading.Lock()
        self._waiting = 0  # submitted, no token yet
        self._running = 0  # first token seen, not finished
        self.metrics = ServerMetrics(self._snapshot)
        self.closed = False
        # Request.stream() waits for tokens in the event loop's default executor (a short blocking read per wait):
        # one thread per request in flight keeps a waiting request from delaying one whose tokens are ready.
        threads = int(config.max_batch_size) + min(int(config.max_queue or 64), 64) + 8
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="multilora-read")
        self._executor_loop: Any = None

    # -------------------------------------------------------------------------------------------- lifetime

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.engine.close()
        finally:
            self.registry.close()
            self.model.close()
            self._executor.shutdown(wait=False)

    # -------------------------------------------------------------------------------------------- models

    def model_cards(self) -> List[Dict[str, Any]]:
        base = {
            "id": self.base_name,
            "object": "model",
            "created": self.created,
            "owned_by": "multilora",
            "root": self.config.model_dir,
            "parent": None,
        }
        if self.context_length:
            base["max_model_len"] = self.context_length
        cards = [base]
        for name in sorted(self._paths):
            cards.append(
                {
                    "id": name,
                    "object": "model",
                    "created": self.created,
                    "owned_by": "multilora",
                    "root": self._paths[name],
                    "parent": self.base_name,
                }
            )
        return cards

    def _check_name(self, name: str) -> None:
        if name == self.base_name:
            raise APIError(400, f"adapter name '{name}' is the base model's name", param="lora_name")

    def add_adapter(self, name: str, path: str, replace: bool = False) -> None:
        """Loads an adapter under ``name`` (a trusted path: the caller checked it). APIError 400 if it cannot be
        loaded (format, shapes, model version)."""
        self._check_name(name)
        try:
            self.registry.load(path, name, replace=replace)
        except self._ml.MultiloraError as e:
            raise APIError(400, f"cannot load adapter '{name}': {e}", param="lora_path") from None
        except (OSError, ValueError) as e:  # a malformed PEFT folder
            raise APIError(400, f"cannot load adapter '{name}': {e}", param="lora_path") from None
        self._paths[name] = path

    def remove_adapter(self, name: str) -> None:
        self.registry.unload(name)  # requests in flight keep what they hold
        self._paths.pop(name, None)

    def adapter_path(self, name: str) -> Optional[str]:
        return self._paths.get(name)

    def load_adapter(self, body: Any) -> str:
        """POST /v1/load_lora_adapter."""
        check_loading_allowed(self.config)
        req = self._parse(LoadAdapterRequest, body)
        self._check_name(req.lora_name)
        if req.lora_name in self._paths:
            raise APIError(400, f"adapter '{req.lora_name}' is already loaded", param="lora_name")
        self.add_adapter(req.lora_name, resolve_adapter_path(self.config.adapter_root, req.lora_path))
        return f"adapter '{req.lora_name}' loaded"

    def unload_adapter(self, body: Any) -> str:
        """POST /v1/unload_lora_adapter."""
        check_loading_allowed(self.config)
        req = self._parse(UnloadAdapterRequest, body)
        if req.lora_name not in self._paths:
            raise unknown_adapter(req.lora_name, "lora_name")
        self.remove_adapter(req.lora_name)
        return f"adapter '{req.lora_name}' unloaded"

    # -------------------------------------------------------------------------------------------- metrics

    def _snapshot(self) -> Dict[str, Optional[float]]:
        out: Dict[str, Optional[float]] = {"queue_depth": float(self._waiting), "running_rows": float(self._running)}
        stats = getattr(self.engine, "stats", None)
        if callable(stats):
            try:
                s = stats()
                get = s.get if isinstance(s, dict) else (lambda k, _s=s: getattr(_s, k, None))
                for key, names in (
                    ("queue_depth", ("queued", "queue_depth", "waiting")),
                    ("running_rows", ("running", "running_rows", "active")),
                ):
                    for n in names:
                        if get(n) is not None:
                            out[key] = float(get(n))
                            break
            except Exception:
                pass
        if not self.model.closed:
            try:
                slots = self.model.batch_slots
                out["slot_table_slots"] = float(slots.slots)
                out["slot_table_residents"] = float(slots.resident)
            except Exception:
                pass
            stats_fn = getattr(self.model, "batch_slot_stats", None)
            if stats_fn is not None:
                try:
                    s = stats_fn() if callable(stats_fn) else stats_fn
                    hits, misses, evictions = (getattr(s, k, None) for k in ("hits", "misses", "evictions"))
                    if hits is None and isinstance(s, (tuple, list)) and len(s) == 3:
                        hits, misses, evictions = s
                    out["slot_table_hits"], out["slot_table_misses"] = hits, misses
                    out["slot_table_evictions"] = evictions
                except Exception:
                    pass
        return out

    # -------------------------------------------------------------------------------------------- requests

    @staticmethod
    def _parse(model: Any, body: Any) -> Any:
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object")
        try:
            return model.model_validate(body)
        except ValidationError as e:
            message, param = validation_message(e)
            raise APIError(400, message, param=param) from None

    def _adapter_set(self, req: Any) -> Tuple[str, List[str], Optional[List[float]]]:
        models = None if self.catalog is None else set(self._paths) | set(self.catalog)
        names, weights = adapter_names(req.model, req.adapters, self.base_name, self._paths, models)
        return req.model, names, weights

    def _unsupported(self, req: Any, chat: bool) -> None:
        def no(param: str, what: str) -> None:
            raise APIError(400, f"{param}: {what} is not supported", param=param)

        if req.n != 1:
            no("n", "n other than 1")
        if req.presence_penalty:
            no("presence_penalty", "a non-zero presence_penalty")
        if req.frequency_penalty:
            no("frequency_penalty", "a non-zero frequency_penalty")
        if req.logit_bias:
            no("logit_bias", "logit_bias")
        if chat:
            if req.logprobs or req.top_logprobs:
                no("logprobs", "logprobs")
            if req.tools:
                no("tools", "tool calling")
            if req.response_format and req.response_format.get("type") not in (None, "text"):
                no("response_format", "a response_format other than text")
        else:
            if req.logprobs is not None:
                no("logprobs", "logprobs")
            if req.echo:
                no("echo", "echo")
            if req.best_of not in (None, 1):
                no("best_of", "best_of other than 1")
            if req.suffix:
                no("suffix", "suffix")

    def _prompt_ids(self, req: Any, chat: bool) -> List[int]:
        if chat:
            if self.template is None:
                raise APIError(
                    400,
                    f"the model '{self.base_name}' has no chat template (tokenizer_config.json "
                    "'chat_template' or chat_template.jinja); use /v1/completions",
                    param="messages",
                )
            messages = []
            for m in req.messages:
                d = m.model_dump(exclude_none=True)
                if isinstance(m.content, list):
                    d["content"] = "".join(part.text for part in m.content)
                messages.append(d)
            try:
                text = self.template.render(messages, add_generation_prompt=req.add_generation_prompt)
            except TemplateError as e:
                raise APIError(400, str(e), param="messages") from None
            ids = [int(t) for t in self.tokenizer.encode(text, add_special_tokens=False)]
        else:
            prompt: Union[str, List[Any]] = req.prompt
            if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
                if len(prompt) != 1:
                    raise APIError(
                        400, f"prompt: one prompt per request is supported (got {len(prompt)})", param="prompt"
                    )
                prompt = prompt[0]
            if isinstance(prompt, str):
                ids = [int(t) for t in self.tokenizer.encode(prompt)]
            else:
                ids = [int(t) for t in prompt]
                bad = [t for t in ids if t < 0 or t >= self.vocab_size]
                if bad:
                    raise APIError(
                        400,
                        f"prompt: token id {bad[0]} is outside the vocabulary (0..{self.vocab_size - 1})",
                        param="prompt",
                    )
        if not ids:
            raise APIError(400, "the prompt is empty", param="messages" if chat else "prompt")
        return ids

    def _params(
        self, req: Any, ids: List[int], max_tokens: int, names: List[str], weights: Optional[List[float]]
    ) -> Any:
        opts: Dict[str, Any] = {"max_length": len(ids) + max_tokens}
        temperature = 1.0 if req.temperature is None else float(req.temperature)
        if temperature == 0.0:
            opts["do_sample"] = False
        else:
            opts.update(
                do_sample=True,
                temperature=temperature,
                top_p=1.0 if req.top_p is None else req.top_p,
                top_k=0 if req.top_k is None else req.top_k,
                seed=req.seed if req.seed is not None else secrets.randbelow(2**31 - 1),
            )
        if req.repetition_penalty is not None:
            opts["repetition_penalty"] = req.repetition_penalty
        params = self._ml.GeneratorParams(self.model)
        try:
            params.set_search_options(**opts)
            if names:
                params.set_active_adapters(self.registry, names, weights)
        except self._ml.MultiloraError as e:
            params.close()
            raise APIError(400, f"invalid search options: {e}") from None
        except BaseException:
            params.close()
            raise
        return params

    def _max_tokens(self, req: Any, chat: bool, n_prompt: int) -> int:
        max_tokens = req.max_tokens
        if chat and req.max_completion_tokens is not None:
            max_tokens = req.max_completion_tokens
        if self.context_length is None:
            return 256 if max_tokens is None else int(max_tokens)
        if n_prompt >= self.context_length:
            raise APIError(
                400,
                f"the prompt has {n_prompt} tokens; the model's context is {self.context_length} tokens",
                param="messages" if chat else "prompt",
                code="context_length_exceeded",
            )
        if max_tokens is None:
            return self.context_length - n_prompt
        if n_prompt + max_tokens > self.context_length:
            raise APIError(
                400,
                f"the model's context is {self.context_length} tokens; the prompt has {n_prompt} and max_tokens "
                f"asks for {max_tokens} more",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return int(max_tokens)

    def _admit(self, chat: bool, body: Any, flight: _Flight) -> None:
        """Validates the body and submits the request to the engine (APIError for anything refused)."""
        req = self._parse(ChatCompletionRequest if chat else CompletionRequest, body)
        self._unsupported(req, chat)
        flight.label, names, weights = self._adapter_set(req)
        stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        if len(stops) > _MAX_STOPS or any(len(s) > _MAX_STOP_CHARS for s in stops):
            raise APIError(
                400, f"stop: at most {_MAX_STOPS} strings of at most {_MAX_STOP_CHARS} characters", param="stop"
            )
        flight.req, flight.stops = req, stops
        flight.ids = self._prompt_ids(req, chat)
        max_tokens = self._max_tokens(req, chat, len(flight.ids))
        flight.params = self._params(req, flight.ids, max_tokens, names, weights)
        flight.engine_req = self._submit(flight.params, flight.ids)

    async def generate(self, kind: str, body: Any) -> AsyncIterator[Event]:
        """Events for one completion (kind "completion") or chat completion (kind "chat"); see the module doc."""
        chat = kind == "chat"
        loop = asyncio.get_running_loop()
        if self._executor_loop is not loop:
            loop.set_default_executor(self._executor)
            self._executor_loop = loop
        flight = _Flight()
        try:
            self._admit(chat, body, flight)
        except APIError as e:
            if flight.params is not None:
                flight.params.close()
            self.metrics.requests.labels(flight.label, str(e.status)).inc()
            yield ("error", e.status, e.body())
            return
        req, ids, engine_req = flight.req, flight.ids, flight.engine_req
        self.metrics.prompt_tokens.labels(flight.label).inc(len(ids))
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        kind_name = "chat.completion.chunk" if chat else "text_completion"
        base = {"id": rid, "object": kind_name, "created": int(time.time()), "model": req.model}
        detok = _Detokenizer(self.tokenizer, ids, self.eos_ids, flight.stops)
        with self._lock:
            self._waiting += 1
        t_submit = time.perf_counter()
        t_last = t_submit
        gen_counter = self.metrics.generated_tokens.labels(flight.label)
        try:
            if req.stream and chat:
                first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                         "finish_reason": None}  # fmt: skip
                yield ("chunk", dict(base, choices=[first]))
            async for token in engine_req.stream():
                now = time.perf_counter()
                if flight.phase == "waiting":
                    with self._lock:
                        self._waiting -= 1
                        self._running += 1
                    flight.phase = "running"
                    self.metrics.ttft.observe(now - t_submit)
                else:
                    self.metrics.itl.observe(now - t_last)
                t_last = now
                flight.out_ids.append(int(token))
                gen_counter.inc()
                piece = detok.add(int(token))
                if req.stream and (piece or req.return_token_ids):
                    chunk = self._chunk(base, chat, piece, None)
                    if req.return_token_ids:  # one chunk per token, each with its id
                        chunk["choices"][0]["token_ids"] = [int(token)]
                    yield ("chunk", chunk)
                if detok.stopped:
                    engine_req.cancel()
                    break
            for event in self._last_events(flight, chat, base, detok):
                yield event
        except (GeneratorExit, asyncio.CancelledError):  # the client went away
            if not flight.answered:
                flight.status = 499
            raise
        except Exception:  # a bug: never take the server down
            flight.status = 500
            log.exception("request %s failed", rid)
            yield ("error", 500, error_body("internal error", "internal_error"))
        finally:
            self._release(flight)

    def _last_events(self, flight: _Flight, chat: bool, base: Dict[str, Any], detok: _Detokenizer) -> List[Event]:
        """The events that end a request: its last chunk (and usage chunk), its response, or its error."""
        req, engine_req, out_ids, n_prompt = flight.req, flight.engine_req, flight.out_ids, len(flight.ids)
        finish = "stop" if detok.stopped else _finish_reason(getattr(engine_req, "finish_reason", None))
        if finish in ("error", "cancelled"):
            if finish == "error":  # the model run failed: the server's fault, not the request's
                err = getattr(engine_req, "error", None)
                log.error("request %s failed in the engine: %s", base["id"], err)
                flight.status, body = (
                    500,
                    error_body(f"generation failed: {err}", "internal_error", code="engine_error"),
                )
            else:  # the engine was closed under the request
                flight.status, body = 503, error_body("the server is shutting down", "service_unavailable")
            return [("chunk", body) if req.stream else ("error", flight.status, body)]
        if finish not in ("stop", "length"):
            finish = "length"
        tail = detok.finish()
        if detok.stopped:
            finish = "stop"
        usage = {"prompt_tokens": n_prompt, "completion_tokens": len(out_ids), "total_tokens": n_prompt + len(out_ids)}
        flight.answered = True  # what follows is the answer: closing the generator from here on is no disconnect
        if not req.stream:
            response = self._response(base, chat, detok.text, finish, usage, flight.ids, out_ids, req.return_token_ids)
            return [("response", response)]
        last = self._chunk(base, chat, tail, finish)
        if req.return_token_ids:
            last["choices"][0]["token_ids"] = []
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        if not include_usage:
            return [("chunk", last)]
        last["usage"] = None
        return [("chunk", last), ("chunk", dict(base, choices=[], usage=usage))]

    def _release(self, flight: _Flight) -> None:
        engine_req = flight.engine_req
        if not engine_req.is_done():
            engine_req.cancel()  # frees the row at the engine's next step
        close = getattr(engine_req, "close", None)
        if close is not None:
            close()  # the native request handle
        with self._lock:
            if flight.phase == "waiting":
                self._waiting -= 1
            else:
                self._running -= 1
        self.metrics.requests.labels(flight.label, str(flight.status)).inc()
        flight.params.close()

    def _submit(self, params: Any, ids: List[int]) -> Any:
        import numpy as np

        try:
            return self.engine.submit(params, np.asarray(ids, dtype=np.int32))
        except self._busy_errors as e:
            raise APIError(
                429,
                f"the server is busy (request queue full): {e}; retry later",
                type="rate_limit_error",
                code="server_busy",
            ) from None
        except self._closed_errors:
            raise APIError(503, "the server is shutting down", type="service_unavailable") from None
        except self._ml.MultiloraError as e:
            raise APIError(400, f"the request was refused: {e}") from None

    @staticmethod
    def _chunk(base: Dict[str, Any], chat: bool, piece: str, finish: Optional[str]) -> Dict[str, Any]:
        if chat:
            choice: Dict[str, Any] = {
                "index": 0,
                "delta": {"content": piece} if piece else {},
                "logprobs": None,
                "finish_reason": finish,
            }
        else:
            choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish}
        return dict(base, choices=[choice])

    @staticmethod
    def _response(
        base: Dict[str, Any],
        chat: bool,
        text: str,
        finish: str,
        usage: Dict[str, int],
        prompt_ids: List[int],
        out_ids: List[int],
        with_ids: bool,
    ) -> Dict[str, Any]:
        if chat:
            choice: Dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
            }
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            obj = "text_completion"
        if with_ids:
            choice["token_ids"] = out_ids
        out = dict(base, object=obj, choices=[choice], usage=usage)
        if with_ids:
            out["prompt_token_ids"] = prompt_ids
        return out
