"""Shared by the serving tests: the generation fixture prepared for the engine, a chat template, and the reference —
each request generated alone with ml.Generator on the *unprepared* fixture folder (independent of the engine, the
per-row path and the server)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

import multilora as ml
from multilora.generation import Generator, GeneratorParams

FX = Path(__file__).parent / "fixtures" / "generation"
LORA = FX / "lora"
ADAPTER = {name: str(LORA / "adapters" / f"{name}.onnx_adapter") for name in ("a", "b")}
REF = json.loads((FX / "reference.json").read_text())
PROMPTS: List[str] = REF["prompts"]
PROMPT_IDS: List[List[int]] = REF["prompt_ids"]
EOS = REF["eos_token_id"]
CONTEXT = 64
BASE = "lora"  # the served base model's name: the folder's name

# A chat template in the Hugging Face style (special tokens as variables, raise_exception for a bad role); the test
# renders the same text by hand (chat_text) to get the expected prompt independently of jinja2.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + m['role']) }}{% endif %}"
    "{{ m['role'] }} {{ m['content'] }} {{ eos_token }} "
    "{% endfor %}{% if add_generation_prompt %}the{% endif %}"
)


def chat_text(messages: Sequence[Dict[str, str]], add_generation_prompt: bool = True) -> str:
    text = "<s>" + "".join(f"{m['role']} {m['content']} </s> " for m in messages)
    return text + ("the" if add_generation_prompt else "")


def prepare_folder(dest: Path, chat_template: Optional[str] = CHAT_TEMPLATE) -> Path:
    """The fixture folder with model.onnx rewritten for per-row batching (what the engine serves)."""
    from multilora.prepare_batching import prepare_batching

    dest.mkdir(parents=True, exist_ok=True)
    folder = dest / BASE
    shutil.copytree(LORA, folder, ignore=shutil.ignore_patterns("model.onnx"))
    prepare_batching(LORA / "model.onnx", folder / "model.onnx")
    if chat_template is not None:
        cfg_path = folder / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["chat_template"] = chat_template
        cfg_path.write_text(json.dumps(cfg, indent=2))
    return folder


class Reference:
    """Greedy tokens of one request generated alone (ml.Generator, unprepared folder)."""

    def __init__(self) -> None:
        self.model = ml.Model(str(LORA))
        self.adapters = ml.Adapters(self.model)
        for name, path in ADAPTER.items():
            self.adapters.load(path, name)
        self.tokenizer = ml.Tokenizer(self.model)
        self._cache: Dict[tuple, List[int]] = {}

    def close(self) -> None:
        self.adapters.close()
        self.model.close()

    def tokens(
        self,
        prompt: Sequence[int],
        names: Sequence[str],
        max_new: int,
        weights: Optional[Sequence[float]] = None,
        **search: Any,
    ) -> List[int]:
        key = (tuple(prompt), tuple(names), max_new, tuple(weights or ()), tuple(sorted(search.items())))
        if key not in self._cache:
            with GeneratorParams(self.model) as params:
                params.set_search_options(max_length=len(prompt) + max_new, **search)
                if names:
                    params.set_active_adapters(self.adapters, list(names), list(weights) if weights else None)
                with Generator(self.model, params) as gen:
                    gen.append_tokens(np.asarray(prompt, dtype=np.int32))
                    while not gen.is_done():
                        gen.generate_next_token()
                    self._cache[key] = gen.get_sequence(0)[len(prompt) :].tolist()
        return list(self._cache[key])

    def text(self, prompt: Sequence[int], tokens: Sequence[int]) -> str:
        """The continuation's text as the package's TokenizerStream decodes it piece by piece after the prompt."""
        stream = self.tokenizer.create_stream(list(prompt))
        return "".join(stream.decode(t) for t in tokens if t != EOS)

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).tolist()
