"""Generation: GeneratorParams, Generator, a Tokenizer over ``tokenizers`` and ``generate_stream``.

    import multilora as ml
    model = ml.Model("phi-lora/")                # folder with genai_config.json, model.onnx, tokenizer.json
    adapters = ml.Adapters(model)
    adapters.load("a.onnx_adapter", "a")
    params = ml.GeneratorParams(model)
    params.set_search_options(max_length=128, do_sample=True, top_k=50, top_p=0.9, temperature=0.7, seed=7)
    params.set_active_adapters(adapters, ["a"])
    gen = ml.Generator(model, params)
    tokenizer = ml.Tokenizer(model)
    gen.append_tokens(tokenizer.encode("..."))
    while not gen.is_done():
        gen.generate_next_token()                # adapters may be switched between steps
    text = tokenizer.decode(gen.get_sequence(0))

    for piece in ml.generate_stream(model, "prompt", adapters=["a"], registry=adapters, max_new_tokens=64):
        print(piece, end="", flush=True)

Per-row adapters: on a model folder whose model.onnx was rewritten with ``multilora prepare-batching``, each
sequence of a batch may use its own adapter set (``[]`` = the base model); every sequence gets the tokens it
would get alone:

    params.set_search_options(batch_size=2, max_length=64)
    params.set_active_adapters_per_row(adapters, [[], ["a"]])
    gen = ml.Generator(model, params)
    gen.append_tokens([prompt0, prompt1])     # one prompt per row
    gen.set_active_adapters_per_row(adapters, [["a"], ["a", "b"]])   # or switch between steps

``generate``/``generate_stream`` take one prompt, so they have no per-row form.

The native side (C ABI, Generation section) deals in int32 token ids; text goes through the model
folder's ``tokenizer.json`` with the ``tokenizers`` package, imported only when a Tokenizer is made.

Search option names are onnxruntime-genai's (``max_length``, ``min_length``, ``top_k``, ``top_p``,
``temperature``, ``repetition_penalty``, ``random_seed``, ``batch_size``, ``do_sample``); ``seed`` is an
alias of ``random_seed``. ``max_length`` counts the prompt. A sequence ends at an eos token (which is
kept in the sequence) once ``min_length`` is reached, or at ``max_length``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _core
from ._api import Adapters, AdapterSetMethods, Model
from ._errors import InvalidArgumentError, MultiloraFileNotFoundError

__all__ = ["GeneratorParams", "Generator", "Tokenizer", "TokenizerStream", "generate_stream", "generate"]

PathLike = Union[str, "os.PathLike[str]"]
Weights = Union[float, Sequence[float], None]

SEARCH_OPTIONS = (
    "max_length",
    "min_length",
    "top_k",
    "top_p",
    "temperature",
    "repetition_penalty",
    "random_seed",
    "batch_size",
    "do_sample",
    "max_new_tokens",
)
_ALIASES = {"seed": "random_seed"}
_INTEGER_OPTIONS = {"max_length", "min_length", "top_k", "random_seed", "batch_size", "max_new_tokens"}


def _search_items(options: Mapping[str, Any]) -> List[tuple]:
    """Validates names/types on the Python side (the library checks ranges) and applies aliases."""
    items = []
    for key, value in options.items():
        name = _ALIASES.get(key, key)
        if name not in SEARCH_OPTIONS:
            known = ", ".join(SEARCH_OPTIONS + tuple(_ALIASES))
            raise _unknown_option(key, known)
        if name == "do_sample":
            if not isinstance(value, (bool, np.bool_, int)) or int(value) not in (0, 1):
                raise TypeError(f"search option 'do_sample' must be a bool, not {value!r}")
            items.append((name, bool(value)))
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"search option '{key}' must be a number, not {type(value).__name__}")
        items.append((name, float(value)))
    return items


def _unknown_option(key: str, known: str) -> Exception:
    return InvalidArgumentError(f"unknown search option '{key}' (known: {known})")


class GeneratorParams(AdapterSetMethods):
    """Search options and the adapters generators start with. Reference-counted in the library:
    generators made from these params keep them alive after ``close()``."""

    def __init__(self, model: Model) -> None:
        self._model_path = model.path
        self._native = _core.GeneratorParams(model._n())
        self._active = []

    def _describe(self) -> str:
        return f"GeneratorParams(model={self._model_path!r})"

    def set_search_options(self, **options: Union[int, float, bool]) -> None:
        """Sets search options by keyword (see the module doc; ``seed`` = ``random_seed``), returning None as
        onnxruntime-genai does. Unknown names raise InvalidArgumentError; out-of-range values raise
        InvalidArgumentError from the library."""
        native = self._n()
        for name, value in _search_items(options):
            if isinstance(value, bool):
                native.set_search_bool(name, value)
            else:
                native.set_search_number(name, value)

    def get_search_option(self, name: str) -> Union[int, float, bool]:
        """The current value of one search option (the C call ``get_search_number``; ``seed`` = ``random_seed``):
        an int for integer options, a bool for do_sample, else a float. Unknown names raise InvalidArgumentError
        from the library."""
        name = _ALIASES.get(name, name)
        v = float(self._n().get_search_number(name))
        return bool(v) if name == "do_sample" else (int(v) if name in _INTEGER_OPTIONS else v)

    def set_stop_tokens(self, tokens: Sequence[int]) -> None:
        """Token ids that end a sequence (kept in it, like eos); [] clears them. Generators and engine
        requests copy them when created / submitted."""
        self._n().set_stop_tokens([int(t) for t in tokens])

    def __repr__(self) -> str:
        return f"<GeneratorParams model={self._model_path!r} {self._state()}>"


class Generator(AdapterSetMethods):
    """A generation in progress; one thread at a time (a call that overlaps a changing call from another
    thread raises BusyError and changes nothing). Keeps its model and params alive (closing them does not
    stop it; closing it while another thread steps it lets that step finish). The adapter-set methods
    switch adapters between steps."""

    def __init__(self, model: Model, params: GeneratorParams) -> None:
        self._model_path = model.path
        self._native = _core.Generator(model._n(), params._n())
        self._active = list(params._active)

    def _describe(self) -> str:
        return f"Generator(model={self._model_path!r})"

    def append_tokens(self, tokens: Any) -> None:
        """Token ids: 1-D for one sequence (also after generated tokens, batch size 1), 2-D [batch, length]
        or a list of lists of different lengths for a batch (padding is the library's business).

        Ids must be integers (a float or bool array raises TypeMismatchError, never truncated) in
        ``[0, vocab_size)`` (InvalidArgumentError naming the id and the vocabulary; no wrapping to int32)."""
        if (
            isinstance(tokens, (list, tuple))
            and tokens
            and all(isinstance(t, (list, tuple, np.ndarray)) for t in tokens)
        ):
            # floats are refused (TypeMismatchError), never truncated; ids outside int32 are refused by the
            # binding (InvalidArgumentError naming the id and the vocabulary)
            self.append_token_sequences(tokens)
            return
        self._n().append_tokens(tokens)

    def append_token_sequences(self, sequences: Sequence[Sequence[int]]) -> None:
        """One prompt per sequence; the count must equal the params' batch_size."""
        self._n().append_token_sequences([np.asarray(s) for s in sequences])

    @property
    def batch_size(self) -> int:
        return int(self._n().batch_size())

    def generate_next_token(self) -> None:
        self._n().generate_next_token()

    def rewind_to(self, new_length: int) -> None:
        """Keeps the first ``new_length`` tokens (batch size 1), as onnxruntime-genai's ``rewind_to``; then
        ``append_tokens``, ``get_logits`` or ``generate_next_token`` continue from there. 0 starts over."""
        self._n().rewind_to(int(new_length))

    def is_done(self) -> bool:
        return bool(self._n().is_done())

    def get_sequence(self, index: int) -> np.ndarray:
        """int32 tokens of sequence ``index`` (prompt then generated)."""
        out: np.ndarray = self._n().get_sequence(index)
        return out

    def get_next_tokens(self) -> np.ndarray:
        """int32 [batch]: the token each sequence got at the last step."""
        out: np.ndarray = self._n().get_next_tokens()
        return out

    def get_logits(self) -> np.ndarray:
        """float32 [batch, vocab] logits the next ``generate_next_token()`` will choose from.

        As in onnxruntime-genai: right after ``append_tokens`` those of the prompt's last position; after a
        step this runs the model on the token it chose first (the pass the next step would otherwise run).
        """
        out: np.ndarray = self._n().get_logits()
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        """Steps until done, yielding each step's next tokens (int32 [batch])."""
        while not self.is_done():
            self.generate_next_token()
            yield self.get_next_tokens()

    def __repr__(self) -> str:
        return f"<Generator model={self._model_path!r} {self._state()}>"


# ------------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------------


def _import_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "multilora.Tokenizer needs the 'tokenizers' package (pip install tokenizers); the native API "
            "itself works on token ids"
        ) from e
    return tokenizers


class Tokenizer:
    """Text <-> token ids with a model folder's ``tokenizer.json`` (Hugging Face ``tokenizers``)."""

    def __init__(self, source: Union[Model, PathLike]) -> None:
        path = source.path if isinstance(source, Model) else os.fspath(source)
        file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise MultiloraFileNotFoundError(f"no tokenizer.json at '{file}'", filename=file)
        self.path = file
        self._tok = _import_tokenizers().Tokenizer.from_file(file)
        self.eos_token_ids: List[int] = []
        self.pad_token_id: Optional[int] = None
        config = os.path.join(os.path.dirname(file), "genai_config.json")
        if os.path.isfile(config):
            with open(config, encoding="utf-8") as f:
                model = json.load(f).get("model", {})
            eos = model.get("eos_token_id", [])
            self.eos_token_ids = [int(e) for e in (eos if isinstance(eos, list) else [eos])]
            self.pad_token_id = model.get("pad_token_id")

    def __repr__(self) -> str:
        return f"<Tokenizer {self.path!r} vocab={self._tok.get_vocab_size()}>"

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size())

    def encode(self, text: str, add_special_tokens: bool = True) -> np.ndarray:
        """int32 [n] token ids."""
        return np.asarray(self._tok.encode(text, add_special_tokens=add_special_tokens).ids, dtype=np.int32)

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = True) -> List[np.ndarray]:
        """One int32 array per text (unpadded: the generator pads a batch itself)."""
        encs = self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return [np.asarray(e.ids, dtype=np.int32) for e in encs]

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        return str(
            self._tok.decode([int(i) for i in np.asarray(ids).reshape(-1)], skip_special_tokens=skip_special_tokens)
        )

    def create_stream(self, prompt: Any = ()) -> TokenizerStream:
        """An incremental decoder; ``prompt`` ids give the context the first pieces are decoded in."""
        return TokenizerStream(self, prompt)

    def apply_chat_template(
        self, messages: Sequence[Dict[str, Any]], template_str: Optional[str] = None, add_generation_prompt: bool = True
    ) -> str:
        """The prompt text for chat ``messages`` (``[{"role": ..., "content": ...}, ...]``), rendered with the
        folder's chat template (``chat_template.jinja``, or ``chat_template`` in ``tokenizer_config.json``) or
        with ``template_str``, in jinja2's sandbox as Hugging Face renders it (needs ``jinja2``: ``pip install
        'multilora[serve]'``). Encode the result with ``add_special_tokens=False``: the template writes them.
        Raises ValueError when there is no template or it refuses the messages."""
        from ._chat import ChatTemplate, load_chat_template, special_tokens

        folder = os.path.dirname(self.path)
        if template_str is not None:
            template: Optional[ChatTemplate] = ChatTemplate(template_str, special_tokens(folder))
        else:
            template = load_chat_template(folder)
        if template is None:
            raise ValueError(f"{folder!r} has no chat template (chat_template.jinja or tokenizer_config.json)")
        return template.render([dict(m) for m in messages], add_generation_prompt)


class TokenizerStream:
    """Decodes tokens one at a time into text pieces whose concatenation is the decoded text.

    Pieces are diffs of decoding a short window of recent tokens, so word-joining spaces and multi-token
    characters come out right; a piece ending in an incomplete UTF-8 sequence is held back."""

    def __init__(self, tokenizer: Tokenizer, prompt: Any = ()) -> None:
        self._tok = tokenizer
        self._ids: List[int] = [int(i) for i in np.asarray(prompt, dtype=np.int64).reshape(-1)]
        self._prefix = max(0, len(self._ids) - 6)
        self._read = len(self._ids)

    def decode(self, token: int) -> str:
        self._ids.append(int(token))
        before = self._tok.decode(self._ids[self._prefix : self._read])
        after = self._tok.decode(self._ids[self._prefix :])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        piece = after[len(before) :] if after.startswith(before) else after
        self._prefix, self._read = self._read, len(self._ids)
        return piece

    def flush(self) -> str:
        """The text held back so far (tokens that end inside a UTF-8 character decode to U+FFFD, as
        ``Tokenizer.decode`` gives them); call once after the last token."""
        if self._read == len(self._ids):
            return ""
        before = self._tok.decode(self._ids[self._prefix : self._read])
        after = self._tok.decode(self._ids[self._prefix :])
        self._prefix, self._read = self._read, len(self._ids)
        return after[len(before) :] if after.startswith(before) else ""


# ------------------------------------------------------------------------------------------------
# One-call helpers
# ------------------------------------------------------------------------------------------------


def _context_length(model: Model) -> Optional[int]:
    try:
        with open(os.path.join(model.path, "genai_config.json"), encoding="utf-8") as f:
            return int(json.load(f)["model"]["context_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _setup(
    model: Model,
    adapters: Union[Sequence[str], Mapping[str, PathLike], str, None],
    registry: Optional[Adapters],
    weights: Weights,
    max_new_tokens: Optional[int],
    prompt_len: int,
    search: Mapping[str, Any],
) -> tuple:
    own_registry = None
    names: List[str] = []
    if isinstance(adapters, Mapping):
        own_registry = registry if registry is not None else Adapters(model)
        for name, path in adapters.items():
            if name not in own_registry:
                own_registry.load(path, name)
        registry = own_registry
        names = list(adapters)
    elif adapters:
        names = [adapters] if isinstance(adapters, str) else list(adapters)
        if registry is None:
            raise TypeError(
                "adapters given by name need registry=<the multilora.Adapters they were loaded into>; "
                "or pass adapters={name: path} to load them for this call"
            )
    params = GeneratorParams(model)
    options = dict(search)
    if max_new_tokens is not None:
        if "max_length" in options:
            raise TypeError("give max_new_tokens or max_length, not both")
        if int(max_new_tokens) < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        # Capped at the context length; a prompt that does not fit fails on append with a ShapeMismatchError.
        context = _context_length(model) or int(params.get_search_option("max_length"))
        options["max_length"] = min(prompt_len + int(max_new_tokens), context)
    if options:
        params.set_search_options(**options)
    if names:
        params.set_active_adapters(registry, names, weights)
    return params, own_registry


def generate_stream(
    model: Model,
    prompt: Union[str, Sequence[int], np.ndarray],
    adapters: Union[Sequence[str], Mapping[str, PathLike], str, None] = None,
    *,
    registry: Optional[Adapters] = None,
    weights: Weights = None,
    tokenizer: Optional[Tokenizer] = None,
    max_new_tokens: Optional[int] = None,
    **search_options: Any,
) -> Iterator[str]:
    """Generates from one prompt and yields the text as it comes (pieces; their concatenation is the
    decoded continuation, without the prompt and without special tokens such as eos).

    ``prompt``: text (encoded with ``tokenizer``, by default the model folder's tokenizer.json) or ids.
    ``adapters``: names in ``registry``, or ``{name: path}`` to load for this call; several are summed
    (``weights`` scale them). ``max_new_tokens`` caps the continuation (else ``max_length`` / the
    model's default applies). Other keywords are search options (``do_sample=True, top_p=0.9, seed=7``).
    """
    tok = tokenizer if tokenizer is not None else Tokenizer(model)
    ids = tok.encode(prompt) if isinstance(prompt, str) else np.asarray(prompt, dtype=np.int32).reshape(-1)
    params, own = _setup(model, adapters, registry, weights, max_new_tokens, len(ids), search_options)
    gen = Generator(model, params)
    try:
        gen.append_tokens(ids)
        stream = tok.create_stream(ids)
        eos = set(tok.eos_token_ids)
        while not gen.is_done():
            gen.generate_next_token()
            token = int(gen.get_next_tokens()[0])
            if token in eos:
                continue
            piece = stream.decode(token)
            if piece:
                yield piece
        rest = stream.flush()  # a last token ending inside a character
        if rest:
            yield rest
    finally:
        gen.close()
        params.close()
        if own is not None and registry is None:
            own.close()


def generate(
    model: Model,
    prompt: Union[str, Sequence[int], np.ndarray],
    adapters: Union[Sequence[str], Mapping[str, PathLike], str, None] = None,
    **kwargs: Any,
) -> str:
    """``"".join(generate_stream(...))``."""
    return "".join(generate_stream(model, prompt, adapters, **kwargs))
