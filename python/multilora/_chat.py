"""Chat templates: the Jinja template a Hugging Face model folder ships, rendered in jinja2's sandbox.

The template comes from ``chat_template.jinja`` or from ``chat_template`` in ``tokenizer_config.json`` (a string, or a
list of ``{"name", "template"}`` of which ``default`` is used). It is rendered the way ``transformers`` renders it:
an immutable sandboxed environment with ``trim_blocks``/``lstrip_blocks``, the ``raise_exception`` and
``strftime_now`` helpers, a ``tojson`` filter that keeps non-ASCII text, and the special tokens (``bos_token``,
``eos_token``, ...) as variables. The sandbox keeps a template from reaching Python internals; the text it produces is
tokenized without adding special tokens (the template writes them).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any, Dict, List, Optional

__all__ = ["ChatTemplate", "TemplateError", "load_chat_template", "special_tokens"]

_SPECIAL = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


class TemplateError(ValueError):
    """The template refused the messages (its ``raise_exception``) or failed to render them."""


def _token_text(value: Any) -> Optional[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):  # an AddedToken written as a dict
        return value["content"]
    return None


class ChatTemplate:
    """A compiled chat template; ``render(messages, add_generation_prompt)`` gives the prompt text."""

    def __init__(self, source: str, special_tokens: Optional[Dict[str, str]] = None) -> None:
        from jinja2.exceptions import TemplateError as JinjaTemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise JinjaTemplateError(message)

        def tojson(
            value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False
        ) -> str:
            return json.dumps(
                value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
            )

        def strftime_now(fmt: str) -> str:
            return datetime.now().strftime(fmt)

        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = strftime_now
        self.source = source
        self._template = env.from_string(source)
        self._special = dict(special_tokens or {})

    def render(self, messages: List[Dict[str, Any]], add_generation_prompt: bool = True) -> str:
        from jinja2.exceptions import TemplateError as JinjaTemplateError

        try:
            return str(
                self._template.render(
                    messages=messages,
                    add_generation_prompt=add_generation_prompt,
                    tools=None,
                    documents=None,
                    **self._special,
                )
            )
        except JinjaTemplateError as e:
            raise TemplateError(f"the chat template refused the messages: {e}") from None
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
            raise TemplateError(f"the chat template failed on the messages: {type(e).__name__}: {e}") from None


def _tokenizer_config(folder: str) -> Dict[str, Any]:
    path = os.path.join(folder, "tokenizer_config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            loaded = json.load(f)
        if isinstance(loaded, dict):
            return loaded
    return {}


def special_tokens(folder: str, config: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
    """The special tokens' texts (``bos_token``, ``eos_token``, ...) of the folder's tokenizer_config.json."""
    config = _tokenizer_config(folder) if config is None else config
    special = {}
    for key in _SPECIAL:
        text = _token_text(config.get(key))
        if text is not None:
            special[key] = text
    return special


def load_chat_template(folder: str) -> Optional[ChatTemplate]:
    """The folder's chat template, or None when it has none (then chat completions answer 400)."""
    config = _tokenizer_config(folder)
    source: Any = None
    jinja_file = os.path.join(folder, "chat_template.jinja")
    if os.path.isfile(jinja_file):
        with open(jinja_file, encoding="utf-8") as f:
            source = f.read()
    else:
        source = config.get("chat_template")
        if isinstance(source, list):
            named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
            source = named.get("default")
    if not isinstance(source, str) or not source.strip():
        return None
    return ChatTemplate(source, special_tokens(folder, config))
