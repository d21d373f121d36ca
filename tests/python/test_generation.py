"""Generation (the C ABI's Generation section through multilora.generation) against independent references.

Fixtures (tests/python/fixtures/generation, made by fixtures/build_generation_fixtures.py with the real
tools): a tiny random Llama exported by onnxruntime-genai's model builder, once without LoRA inputs
(``base/``) and once with them (``lora/``, LoRA inputs extracted by Olive's ``generate-adapter``), two
PEFT adapters with random non-zero weights converted to .onnx_adapter files, and the references:

- PyTorch + PEFT greedy tokens and per-step logits (full recompute, no KV cache) for base, a, b and a+b
  (PEFT with both adapters active sums their deltas);
- onnxruntime-genai greedy tokens (og.Adapters + set_active_adapter), also recomputed live here when
  onnxruntime_genai is importable;
- for adapter switching between steps, a small decoder loop over an onnxruntime.InferenceSession fed
  with onnxruntime.AdapterFormat's view of the adapter files (no multilora code involved).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest

import multilora as ml
from multilora.generation import SEARCH_OPTIONS, Generator, GeneratorParams, Tokenizer, generate, generate_stream

from support import assert_error

FX = Path(__file__).parent / "fixtures" / "generation"
LORA = FX / "lora"
BASE = FX / "base"
ADAPTER = {name: str(LORA / "adapters" / f"{name}.onnx_adapter") for name in ("a", "b")}
REF = json.loads((FX / "reference.json").read_text())
LOGITS = dict(np.load(FX / "reference_logits.npz"))
PROMPTS: List[List[int]] = REF["prompt_ids"]
NEW = REF["new_tokens"]
EOS = REF["eos_token_id"]
LABELS = {"base": [], "a": ["a"], "b": ["b"], "a+b": ["a", "b"]}
ATOL = 1e-4


# ---- fixtures --------------------------------------------------------------------------------------


def make_params(
    model: ml.Model, gregistry: Optional[ml.Adapters] = None, names: Sequence[str] = (), **search: object
) -> GeneratorParams:
    p = GeneratorParams(model)
    if search:
        p.set_search_options(**search)
    if names:
        p.set_active_adapters(gregistry, list(names))
    return p


def greedy(
    model: ml.Model,
    prompt: Sequence[int],
    gregistry: Optional[ml.Adapters] = None,
    names: Sequence[str] = (),
    new: int = NEW,
    **search: object,
):
    """(generated tokens, the logits each token was chosen from [steps, vocab]).

    As in onnxruntime-genai, get_logits() before generate_next_token() returns the logits that step
    chooses from (it runs the token chosen by the previous step first)."""
    with make_params(model, gregistry, names, max_length=len(prompt) + new, **search) as params:
        with Generator(model, params) as gen:
            gen.append_tokens(np.asarray(prompt, dtype=np.int32))
            logits = []
            while not gen.is_done():
                logits.append(gen.get_logits()[0].copy())
                gen.generate_next_token()
            return gen.get_sequence(0)[len(prompt) :].tolist(), np.stack(logits)


def strip_eos(tokens: List[int]) -> List[int]:
    return tokens[:-1] if tokens and tokens[-1] == EOS else tokens


# ---- correctness against PyTorch + PEFT and onnxruntime-genai --------------------------------------


@pytest.mark.parametrize("label", list(LABELS))
@pytest.mark.parametrize("index", range(len(PROMPTS)))
def test_greedy_matches_pytorch_peft(gmodel, gregistry, label, index):
    tokens, logits = greedy(gmodel, PROMPTS[index], gregistry, LABELS[label])
    assert tokens == REF["torch"][label][index]
    expected = LOGITS[f"{label}/{index}"]
    assert logits.shape == expected.shape
    np.testing.assert_allclose(logits, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("label", ["base", "a", "b"])
def test_greedy_matches_recorded_onnxruntime_genai(gmodel, gregistry, label):
    for index, prompt in enumerate(PROMPTS):
        tokens, _ = greedy(gmodel, prompt, gregistry, LABELS[label])
        # onnxruntime-genai leaves a final eos out of the sequence; multilora keeps it.
        assert strip_eos(tokens) == REF["genai"][label][index]


def test_greedy_matches_live_onnxruntime_genai(gmodel, gregistry):
    og = pytest.importorskip("onnxruntime_genai")
    model = og.Model(str(LORA))
    og_adapters = og.Adapters(model)
    for name, path in ADAPTER.items():
        og_adapters.load(path, name)
    for label in ("base", "a", "b"):
        for prompt in PROMPTS:
            params = og.GeneratorParams(model)
            params.set_search_options(max_length=len(prompt) + NEW, do_sample=False)
            gen = og.Generator(model, params)
            if label != "base":
                gen.set_active_adapter(og_adapters, label)
            gen.append_tokens(np.array([prompt], dtype=np.int32))
            # onnxruntime-genai's get_logits() runs the pending token first (it returns the logits the
            # *next* token will be chosen from), and hangs its generator when called once it is done.
            og_logits = [np.array(gen.get_logits()).reshape(-1)]
            while True:
                gen.generate_next_token()
                if gen.is_done():
                    break
                og_logits.append(np.array(gen.get_logits()).reshape(-1))
            og_tokens = [int(t) for t in gen.get_sequence(0)[len(prompt) :]]
            tokens, logits = greedy(gmodel, prompt, gregistry, LABELS[label])
            assert strip_eos(tokens) == og_tokens, label
            n = min(len(og_logits), len(logits))
            np.testing.assert_allclose(logits[:n], np.stack(og_logits[:n]), rtol=0, atol=ATOL)


def test_base_model_folder_and_cleared_set_equal_pytorch_base(gmodel):
    with ml.Model(str(BASE)) as base:
        assert base.lora_inputs == []
        for index, prompt in enumerate(PROMPTS):
            tokens, logits = greedy(base, prompt)
            assert tokens == REF["torch"]["base"][index]
            np.testing.assert_allclose(logits, LOGITS[f"base/{index}"], rtol=0, atol=ATOL)
            # The LoRA model with no adapter active is the same model.
            tokens2, logits2 = greedy(gmodel, prompt)
            assert tokens2 == tokens
            np.testing.assert_allclose(logits2, logits, rtol=0, atol=ATOL)


# ---- batches ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["base", "a", "a+b"])
def test_batch_of_prompts_of_different_lengths(gmodel, gregistry, label):
    """Every row of a batch generates what its prompt generates alone (lengths 7, 5, 9)."""
    longest = max(len(p) for p in PROMPTS)
    with (
        make_params(gmodel, gregistry, LABELS[label], batch_size=len(PROMPTS), max_length=longest + NEW) as params,
        Generator(gmodel, params) as gen,
    ):
        gen.append_tokens([list(p) for p in PROMPTS])
        assert gen.batch_size == len(PROMPTS)
        first = gen.get_logits()
        assert first.shape == (len(PROMPTS), 96)
        for i in range(len(PROMPTS)):
            np.testing.assert_allclose(first[i], LOGITS[f"{label}/{i}"][0], rtol=0, atol=ATOL)
        steps = 0
        while not gen.is_done():
            gen.generate_next_token()
            steps += 1
            nxt = gen.get_next_tokens()
            assert nxt.shape == (len(PROMPTS),)
        for i, prompt in enumerate(PROMPTS):
            seq = gen.get_sequence(i).tolist()
            assert seq[: len(prompt)] == prompt  # no padding in sequences
            generated = seq[len(prompt) :]
            ref = REF["torch"][label][i]
            # max_length applies to each sequence's own length (prompt + generated); the reference ran
            # NEW steps, shorter prompts here may run longer
            assert generated[: len(ref)] == ref
            if ref[-1] == EOS:
                assert generated == ref
            else:
                assert len(generated) == longest + NEW - len(prompt) or generated[-1] == EOS
                assert len(generated) <= longest + NEW - len(prompt)


def test_batch_size_must_match_the_params(gmodel):
    with make_params(gmodel, batch_size=2) as params, Generator(gmodel, params) as gen:
        with pytest.raises(ml.InvalidArgumentError) as e:
            gen.append_tokens([PROMPTS[0]])
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "batch_size is 2")
        with pytest.raises(ml.InvalidArgumentError) as e:
            gen.append_tokens(np.array(PROMPTS[0], dtype=np.int32))
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "batch_size is 2")


# ---- adapters between steps: an independent onnxruntime decoder loop ---------------------------------


class OrtDecoder:
    """Greedy decoding with onnxruntime.InferenceSession and onnxruntime.AdapterFormat (no multilora)."""

    def __init__(self, folder: Path) -> None:
        import onnx
        import onnxruntime as ort

        cfg = json.loads((folder / "genai_config.json").read_text())["model"]
        self.layers = cfg["decoder"]["num_hidden_layers"]
        self.kv_heads = cfg["decoder"]["num_key_value_heads"]
        self.head = cfg["decoder"]["head_size"]
        proto = onnx.load(str(folder / "model.onnx"))
        seen, keep = set(), []
        for i in proto.graph.input:  # the extracted model lists every LoRA input twice
            if i.name not in seen:
                seen.add(i.name)
                keep.append(i)
        del proto.graph.input[:]
        proto.graph.input.extend(keep)
        so = ort.SessionOptions()
        so.log_severity_level = 3  # the extracted model keeps initializers among the inputs: ORT warns
        self.session = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
        self.adapters: Dict[str, Dict[str, np.ndarray]] = {}
        for name, path in ADAPTER.items():
            fmt = ort.AdapterFormat.read_adapter(path)
            # .numpy() views the adapter object's memory: copy before it goes away
            self.adapters[name] = {k: np.array(v.numpy(), copy=True) for k, v in fmt.get_parameters().items()}

    def lora_feeds(self, name: Optional[str]) -> Dict[str, np.ndarray]:
        return dict(self.adapters[name]) if name else {}

    def run(self, schedule: List[Optional[str]], prompt: Sequence[int]):
        """schedule[i] = adapter (or None) for pass i (pass 0 = the prompt). Returns (tokens, logits)."""
        past = {}
        for layer in range(self.layers):
            for kv in ("key", "value"):
                past[f"past_key_values.{layer}.{kv}"] = np.zeros((1, self.kv_heads, 0, self.head), np.float32)
        ids = list(prompt)
        fed = 0
        tokens, logits = [], []
        for adapter in schedule:
            new = np.array([ids[fed:]], dtype=np.int64)
            feeds = {
                "input_ids": new,
                "attention_mask": np.ones((1, len(ids)), np.int64),
                **past,
                **self.lora_feeds(adapter),
            }
            outs = self.session.run(None, feeds)
            names = [o.name for o in self.session.get_outputs()]
            got = dict(zip(names, outs))
            last = got["logits"][0, -1]
            past = {k.replace("present.", "past_key_values."): v for k, v in got.items() if k.startswith("present.")}
            fed = len(ids)
            logits.append(last)
            token = int(np.argmax(last))
            tokens.append(token)
            ids.append(token)
        return tokens, np.stack(logits)


@pytest.fixture(scope="module")
def ort_decoder() -> OrtDecoder:
    pytest.importorskip("onnx")
    return OrtDecoder(LORA)


@pytest.mark.parametrize(
    "schedule",
    [
        ["a", "a", "a", "b", "b", "b", "b", "b"],  # switch a -> b after three tokens
        ["b", "b", None, None, None, "a", "a", "a"],  # b, cleared (base), then a
        [None, "a", None, "b", None, "a", None, "b"],  # a switch at every step
        ["b", None, "b", None, "a", None, "b", None],
    ],
)
def test_switching_adapters_between_steps(gmodel, gregistry, ort_decoder, schedule):
    prompt = PROMPTS[1]
    ref_tokens, ref_logits = ort_decoder.run(schedule, prompt)
    assert EOS not in ref_tokens  # the schedules are chosen so that generation runs all 8 steps
    with (
        make_params(
            gmodel, gregistry, [schedule[0]] if schedule[0] else [], max_length=len(prompt) + len(schedule)
        ) as params,
        Generator(gmodel, params) as gen,
    ):
        gen.append_tokens(np.asarray(prompt, dtype=np.int32))
        logits = []
        for step, adapter in enumerate(schedule):
            if step:  # the token chosen last is fed with the set active now
                if adapter:
                    gen.set_active_adapters(gregistry, [adapter])
                else:
                    gen.clear_active_adapters()
            logits.append(gen.get_logits()[0].copy())
            gen.generate_next_token()
        tokens = gen.get_sequence(0)[len(prompt) :].tolist()
    # get_logits before step i holds the logits the token of step i is chosen from (pass i)
    assert tokens == ref_tokens
    np.testing.assert_allclose(np.stack(logits), ref_logits, rtol=0, atol=ATOL)


def test_generator_starts_with_the_params_set_and_params_changes_do_not_reach_it(gmodel, gregistry):
    prompt = PROMPTS[0]
    params = make_params(gmodel, gregistry, ["a"], max_length=len(prompt) + NEW)
    gen = Generator(gmodel, params)
    params.set_active_adapters(gregistry, ["b"])  # the generator copied the set at creation
    params.set_search_options(max_length=len(prompt) + 1)
    gen.append_tokens(np.asarray(prompt, dtype=np.int32))
    while not gen.is_done():
        gen.generate_next_token()
    assert gen.get_sequence(0)[len(prompt) :].tolist() == REF["torch"]["a"][0]
    gen.close()
    params.close()


# ---- search ----------------------------------------------------------------------------------------


def sample_run(model, prompt, new=10, **search):
    with make_params(model, max_length=len(prompt) + new, **search) as params, Generator(model, params) as gen:
        gen.append_tokens(np.asarray(prompt, dtype=np.int32))
        steps = []
        while not gen.is_done():
            logits = gen.get_logits()[0].copy()
            gen.generate_next_token()
            steps.append((logits, int(gen.get_next_tokens()[0]), gen.get_sequence(0)[:-1].tolist()))
        return gen.get_sequence(0)[len(prompt) :].tolist(), steps


def test_sampling_is_reproducible_with_a_seed(gmodel):
    prompt = PROMPTS[2]
    opts = dict(do_sample=True, temperature=1.5, top_k=0, top_p=1.0, min_length=len(PROMPTS[2]) + 10)
    a, _ = sample_run(gmodel, prompt, seed=7, **opts)
    b, _ = sample_run(gmodel, prompt, seed=7, **opts)
    assert a == b
    others = {tuple(sample_run(gmodel, prompt, seed=s, **opts)[0]) for s in range(8, 14)}
    assert len(others | {tuple(a)}) > 1  # different seeds give different samples


def test_top_k_and_top_p_restrict_the_candidates(gmodel):
    prompt = PROMPTS[2]
    for seed in range(5):
        _, steps = sample_run(gmodel, prompt, do_sample=True, top_k=3, temperature=2.0, seed=seed)
        for logits, token, _ in steps:
            assert token in np.argsort(-logits)[:3]
        _, steps = sample_run(gmodel, prompt, do_sample=True, top_k=0, top_p=0.5, seed=seed)
        for logits, token, _ in steps:
            p = np.exp(logits - logits.max())
            p /= p.sum()
            order = np.argsort(-p)
            nucleus = order[: int(np.searchsorted(np.cumsum(p[order]), 0.5) + 1)]
            assert token in nucleus


def test_top_k_1_and_tiny_temperature_are_greedy(gmodel):
    prompt = PROMPTS[1]
    ref = REF["torch"]["base"][1]
    assert sample_run(gmodel, prompt, new=NEW, do_sample=True, top_k=1, seed=3)[0] == ref
    assert sample_run(gmodel, prompt, new=NEW, do_sample=True, top_k=0, temperature=1e-6, seed=3)[0] == ref


def test_repetition_penalty_follows_the_ctrl_rule(gmodel):
    penalty = 1.7
    for prompt in PROMPTS:
        tokens, steps = sample_run(gmodel, prompt, new=NEW, repetition_penalty=penalty)
        for logits, token, history in steps:
            x = logits.copy()
            for t in set(history):
                x[t] = x[t] / penalty if x[t] > 0 else x[t] * penalty
            assert token == int(np.argmax(x))


def test_min_length_holds_eos_back_and_max_length_stops(gmodel):
    prompt = PROMPTS[1]  # base greedy: [0, eos] — eos at the second step
    assert REF["torch"]["base"][1] == [0, EOS]
    tokens, _ = sample_run(gmodel, prompt, new=8, min_length=len(prompt) + 6)
    assert EOS not in tokens[:6]
    assert len(tokens) <= 8
    tokens, _ = sample_run(gmodel, prompt, new=1)
    assert tokens == [0]


def test_search_options_round_trip(gmodel):
    with GeneratorParams(gmodel) as p:
        defaults = {name: p.get_search_option(name) for name in SEARCH_OPTIONS}
        assert defaults["max_length"] == 64 and defaults["top_k"] == 50 and defaults["do_sample"] is False
        p.set_search_options(
            max_length=32,
            do_sample=True,
            top_k=5,
            top_p=0.9,
            temperature=0.7,
            seed=11,
            repetition_penalty=1.1,
            min_length=3,
        )
        got = {name: p.get_search_option(name) for name in SEARCH_OPTIONS}
        assert got["max_length"] == 32 and got["do_sample"] is True and got["top_k"] == 5
        assert got["random_seed"] == 11 and got["min_length"] == 3
        assert got["top_p"] == pytest.approx(0.9) and got["temperature"] == pytest.approx(0.7)


# ---- lifetimes -------------------------------------------------------------------------------------


def test_generator_keeps_params_and_model_alive(gregistry):
    model = ml.Model(str(LORA))
    reg = ml.Adapters(model)
    reg.load(ADAPTER["a"], "a")
    prompt = PROMPTS[0]
    params = make_params(model, reg, ["a"], max_length=len(prompt) + NEW)
    gen = Generator(model, params)
    params.close()
    reg.close()
    model.close()  # the generator keeps the model, its params and the adapter alive
    gen.append_tokens(np.asarray(prompt, dtype=np.int32))
    while not gen.is_done():
        gen.generate_next_token()
    assert gen.get_sequence(0)[len(prompt) :].tolist() == REF["torch"]["a"][0]
    gen.close()
    with pytest.raises(ValueError, match="closed"):
        gen.generate_next_token()
    with pytest.raises(ValueError, match="closed"):
        Generator(model, params)  # a Python object closed by its user names itself
    with pytest.raises(ValueError, match="closed"):
        GeneratorParams(model)


def test_unloading_an_adapter_in_use_is_safe(gmodel):
    reg = ml.Adapters(gmodel)
    reg.load(ADAPTER["b"], "b")
    prompt = PROMPTS[1]
    params = make_params(gmodel, reg, ["b"], max_length=len(prompt) + NEW)
    gen = Generator(gmodel, params)
    gen.append_tokens(np.asarray(prompt, dtype=np.int32))
    gen.generate_next_token()
    reg.unload("b")  # the name is gone; params and generator keep their version
    assert "b" not in reg
    gen2 = Generator(gmodel, params)
    while not gen.is_done():
        gen.generate_next_token()
    assert gen.get_sequence(0)[len(prompt) :].tolist() == REF["torch"]["b"][1]
    gen2.append_tokens(np.asarray(prompt, dtype=np.int32))
    while not gen2.is_done():
        gen2.generate_next_token()
    assert gen2.get_sequence(0)[len(prompt) :].tolist() == REF["torch"]["b"][1]
    with pytest.raises(ml.AdapterNotFoundError):
        params.set_active_adapters(reg, ["b"])
    for o in (gen, gen2, params, reg):
        o.close()


# ---- bad input -------------------------------------------------------------------------------------


def test_plain_onnx_model_cannot_generate(model):
    with pytest.raises(ml.InvalidArgumentError) as e:
        GeneratorParams(model)
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "genai_config.json")


def test_prompt_longer_than_the_context(gmodel):
    with GeneratorParams(gmodel) as params, Generator(gmodel, params) as gen:
        with pytest.raises(ml.ShapeMismatchError) as e:
            gen.append_tokens(np.full(65, 4, dtype=np.int32))
        assert_error(e, ml.ShapeMismatchError, "MLORA_STATUS_SHAPE_MISMATCH", "65 tokens", "context length 64")
    with make_params(gmodel, max_length=8) as params, Generator(gmodel, params) as gen:
        with pytest.raises(ml.ShapeMismatchError) as e:
            gen.append_tokens(np.full(9, 4, dtype=np.int32))
        assert_error(e, ml.ShapeMismatchError, "MLORA_STATUS_SHAPE_MISMATCH", "max_length 8")
        gen.append_tokens(np.full(6, 4, dtype=np.int32))
        gen.generate_next_token()
        with pytest.raises(ml.ShapeMismatchError):
            gen.append_tokens(np.full(3, 4, dtype=np.int32))  # 7 + 3 > 8


def test_unknown_and_out_of_range_search_options(gmodel):
    with GeneratorParams(gmodel) as p:
        with pytest.raises(ml.InvalidArgumentError) as e:
            p.set_search_options(num_bems=2)
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "unknown search option 'num_bems'")
        # The library checks names too (what C, C# and Java callers see).
        with pytest.raises(ml.InvalidArgumentError) as e:
            p._n().set_search_number("beam_width", 2.0)
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "unknown search option 'beam_width'")
        for key, value, words in [
            ("top_p", 0.0, "(0, 1]"),
            ("temperature", -1.0, "> 0"),
            ("max_length", 65, "1..64"),
            ("top_k", 2.5, "integer"),
            ("batch_size", 0, "1..65536"),
        ]:
            with pytest.raises(ml.InvalidArgumentError) as e:
                p.set_search_options(**{key: value})
            assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", f"'{key}'", words)
        with pytest.raises(TypeError):
            p.set_search_options(top_k="5")
        assert p.get_search_option("top_p") == 1.0  # unchanged by the failures


def test_adapters_from_another_model(gmodel, gregistry):
    with ml.Model(str(LORA)) as other, ml.Adapters(other) as foreign:
        foreign.load(ADAPTER["a"], "a")
        with GeneratorParams(gmodel) as params:
            with pytest.raises(ml.InvalidArgumentError) as e:
                params.set_active_adapters(foreign, ["a"])
            assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "loaded for model")
            with Generator(gmodel, params) as gen:
                with pytest.raises(ml.InvalidArgumentError) as e:
                    gen.set_active_adapters(foreign, ["a"])
                assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "loaded for model")
            with GeneratorParams(other) as other_params:
                with pytest.raises(ml.InvalidArgumentError) as e:
                    Generator(gmodel, other_params)
                assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "params were created")


def test_misuse_of_the_generator(gmodel):
    with GeneratorParams(gmodel) as params, Generator(gmodel, params) as gen:
        assert not gen.is_done()
        with pytest.raises(ml.InvalidArgumentError) as e:
            gen.generate_next_token()
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "no prompt")
        with pytest.raises(ml.InvalidArgumentError):
            gen.get_logits()
        with pytest.raises(ml.InvalidArgumentError):
            gen.get_next_tokens()
        with pytest.raises(ml.InvalidArgumentError) as e:
            gen.append_tokens(np.array([5, 96], dtype=np.int32))
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "96 is outside the vocabulary")
        with pytest.raises(ml.InvalidArgumentError):
            gen.append_tokens(np.array([], dtype=np.int32))
        with pytest.raises(ml.InvalidArgumentError):
            gen.get_sequence(1)
    with make_params(gmodel, max_length=len(PROMPTS[0]) + 1) as params, Generator(gmodel, params) as gen:
        gen.append_tokens(np.asarray(PROMPTS[0], dtype=np.int32))
        gen.generate_next_token()
        assert gen.is_done()
        with pytest.raises(ml.InvalidArgumentError) as e:
            gen.generate_next_token()
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "done")


def test_continuing_a_sequence_with_more_tokens(gmodel, gregistry):
    """Appending after generated tokens equals one prompt with everything (batch size 1)."""
    prompt = PROMPTS[2]
    with make_params(gmodel, gregistry, ["a"], max_length=40) as params, Generator(gmodel, params) as gen:
        gen.append_tokens(np.asarray(prompt[:4], dtype=np.int32))
        gen.generate_next_token()
        gen.generate_next_token()
        gen.append_tokens(np.asarray(prompt[4:], dtype=np.int32))
        seq = gen.get_sequence(0).tolist()
        logits = gen.get_logits()[0]
    tokens_alone, logits_alone = greedy(gmodel, seq, gregistry, ["a"], new=1)
    np.testing.assert_allclose(logits, logits_alone[0], rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["model"]["decoder"].pop("num_hidden_layers"), "model.decoder.num_hidden_layers is missing"),
        (lambda c: c["model"].__setitem__("context_length", "long"), "model.context_length must be an integer"),
        (lambda c: c["search"].__setitem__("top_p", 2.0), "search.top_p must be in (0, 1]"),
        (
            lambda c: c["model"]["decoder"]["inputs"].__setitem__("past_key_names", "past.key"),
            "model.decoder.inputs.past_key_names",
        ),
        (
            lambda c: c["model"]["decoder"]["session_options"].__setitem__("intra_op_num_threads", "2"),
            "model.decoder.session_options.intra_op_num_threads must be an integer",
        ),
    ],
)
def test_bad_genai_config_names_the_file_and_key(tmp_path, edit, key):
    folder = tmp_path / "m"
    shutil.copytree(LORA, folder, ignore=shutil.ignore_patterns("adapters"))
    cfg = json.loads((folder / "genai_config.json").read_text())
    edit(cfg)
    (folder / "genai_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ml.FormatError) as e:
        ml.Model(str(folder))
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "genai_config.json", key)


def test_genai_config_names_and_session_options_are_used(tmp_path):
    """Renamed inputs/outputs are followed; session options from the config are applied."""
    folder = tmp_path / "m"
    shutil.copytree(LORA, folder, ignore=shutil.ignore_patterns("adapters"))
    cfg = json.loads((folder / "genai_config.json").read_text())
    cfg["model"]["decoder"]["session_options"].update(
        {
            "intra_op_num_threads": 1,
            "inter_op_num_threads": 1,
            "graph_optimization_level": "ORT_ENABLE_BASIC",
            "enable_cpu_mem_arena": False,
            "config_entries": {"session.intra_op.allow_spinning": "0"},
        }
    )
    cfg["model"]["decoder"]["outputs"]["logits"] = "no_such_output"
    (folder / "genai_config.json").write_text(json.dumps(cfg))
    with ml.Model(str(folder)) as m, GeneratorParams(m) as p:
        with pytest.raises(ml.FormatError) as e:
            Generator(m, p)
        assert_error(
            e, ml.FormatError, "MLORA_STATUS_FORMAT", "no output 'no_such_output'", "model.decoder.outputs.logits"
        )
    cfg["model"]["decoder"]["outputs"]["logits"] = "logits"
    (folder / "genai_config.json").write_text(json.dumps(cfg))
    with ml.Model(str(folder)) as m:
        tokens, _ = greedy(m, PROMPTS[0])
        assert tokens == REF["torch"]["base"][0]


# ---- tokenizer, streaming, CLI -------------------------------------------------------------------


def test_tokenizer_and_generate_stream(gmodel, gregistry):
    pytest.importorskip("tokenizers")
    tok = Tokenizer(gmodel)
    assert tok.vocab_size == 96 and tok.eos_token_ids == [EOS]
    prompt_text = REF["prompts"][0]
    assert tok.encode(prompt_text).tolist() == PROMPTS[0]
    pieces = list(generate_stream(gmodel, prompt_text, ["a"], registry=gregistry, max_new_tokens=NEW))
    assert len(pieces) > 1
    expected = tok.decode(REF["torch"]["a"][0])
    assert "".join(pieces).strip() == expected
    full = tok.decode(PROMPTS[0] + REF["torch"]["a"][0])
    assert prompt_text + "".join(pieces) == full
    # adapters by path, loaded for the call; several summed
    text = generate(gmodel, PROMPTS[0], {"a": ADAPTER["a"], "b": ADAPTER["b"]}, max_new_tokens=NEW)
    assert text.strip() == tok.decode(REF["torch"]["a+b"][0])
    with pytest.raises(TypeError, match="registry"):
        generate(gmodel, prompt_text, ["a"])


def test_cli_generate_streams_text(capsys):
    pytest.importorskip("tokenizers")
    from multilora.cli import main

    prompt = REF["prompts"][2]
    rc = main(
        [
            "generate",
            "--model",
            str(LORA),
            "--adapter",
            f"a={ADAPTER['a']}",
            "--adapter",
            f"b={ADAPTER['b']}",
            "--active",
            "b",
            "--prompt",
            prompt,
            "--max-new-tokens",
            str(NEW),
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    tok = Tokenizer(str(LORA))
    assert out.out.strip() == tok.decode(REF["torch"]["b"][2])
    rc = main(["generate", "--model", str(LORA), "--prompt", prompt, "--max-new-tokens", "2", "--top-p", "7"])
    err = capsys.readouterr().err
    assert rc == 1 and "MLORA_STATUS_INVALID_ARGUMENT" in err and "top_p" in err


def test_c_abi_params_are_reference_counted(gmodel):
    """Through the raw extension: releasing the params handle first leaves generators working."""
    core = ml._core
    params = core.GeneratorParams(gmodel._n())
    params.set_search_number("max_length", float(len(PROMPTS[0]) + 3))
    gen = core.Generator(gmodel._n(), params)
    params.close()
    gen.append_tokens(np.asarray(PROMPTS[0], dtype=np.int32))
    while not gen.is_done():
        gen.generate_next_token()
    assert gen.get_sequence(0).tolist()[len(PROMPTS[0]) :] == REF["torch"]["base"][0][:3]
    gen.close()


def test_fixture_sizes_stay_small():
    total = sum(f.stat().st_size for f in FX.rglob("*") if f.is_file())
    assert total < 600_000, total
    assert os.path.exists(FX / "reference.json")


# ---- the other cache layouts: growing cache, and left padding for models with position_ids ---------------


def copy_fixture(tmp: Path, **search: object) -> Path:
    folder = tmp / "m"
    shutil.copytree(LORA, folder)
    cfg = json.loads((folder / "genai_config.json").read_text())
    cfg["search"].update(search)
    (folder / "genai_config.json").write_text(json.dumps(cfg))
    return folder


def test_growing_cache_matches_the_shared_buffer(tmp_path):
    """With past_present_share_buffer false the presents are fed back as pasts (the cache grows)."""
    folder = copy_fixture(tmp_path, past_present_share_buffer=False)
    with ml.Model(str(folder)) as m, ml.Adapters(m) as reg:
        reg.load(ADAPTER["a"], "a")
        for index, prompt in enumerate(PROMPTS):
            tokens, logits = greedy(m, prompt, reg, ["a"])
            assert tokens == REF["torch"]["a"][index]
            np.testing.assert_allclose(logits, LOGITS[f"a/{index}"], rtol=0, atol=ATOL)
        longest = max(len(p) for p in PROMPTS)
        with make_params(m, reg, ["a"], batch_size=3, max_length=longest + NEW) as params, Generator(m, params) as gen:
            gen.append_tokens([list(p) for p in PROMPTS])
            while not gen.is_done():
                gen.generate_next_token()
            for i, prompt in enumerate(PROMPTS):
                ref = REF["torch"]["a"][i]
                assert gen.get_sequence(i).tolist()[len(prompt) :][: len(ref)] == ref


class ClassicDecoder:
    """A one-layer, one-head decoder in plain ONNX ops with position_ids, a real attention mask and a KV cache
    that grows by concatenation (the classic export layout), plus its numpy reference."""

    def __init__(self, folder: Path, vocab: int = 40, dim: int = 16, context: int = 48, seed: int = 0) -> None:
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        rng = np.random.default_rng(seed)
        self.w = {
            "E": rng.normal(0, 1, (vocab, dim)),
            "P": rng.normal(0, 0.5, (context, dim)),
            "Wq": rng.normal(0, 0.5, (dim, dim)),
            "Wk": rng.normal(0, 0.5, (dim, dim)),
            "Wv": rng.normal(0, 0.5, (dim, dim)),
            "Wo": rng.normal(0, 0.5, (dim, dim)),
            "Wlm": rng.normal(0, 0.5, (dim, vocab)),
        }
        self.w = {k: v.astype(np.float32) for k, v in self.w.items()}
        self.dim, self.vocab = dim, vocab
        inits = [numpy_helper.from_array(v, k) for k, v in self.w.items()]
        inits += [
            numpy_helper.from_array(np.array(v, dtype=dt), k)
            for k, v, dt in [
                ("one", 1.0, np.float32),
                ("neg", -1e9, np.float32),
                ("scale", 1 / np.sqrt(dim), np.float32),
                ("ax1", [1], np.int64),
                ("idx1", [1], np.int64),
                ("ax0", [0], np.int64),
            ]
        ]
        n = helper.make_node
        nodes = [
            n("Gather", ["E", "input_ids"], ["tok"]),
            n("Gather", ["P", "position_ids"], ["pos"]),
            n("Add", ["tok", "pos"], ["x"]),
            n("MatMul", ["x", "Wq"], ["q3"]),
            n("MatMul", ["x", "Wk"], ["k3"]),
            n("MatMul", ["x", "Wv"], ["v3"]),
            n("Unsqueeze", ["q3", "ax1"], ["q"]),
            n("Unsqueeze", ["k3", "ax1"], ["k"]),
            n("Unsqueeze", ["v3", "ax1"], ["v"]),
            n("Concat", ["past_key_values.0.key", "k"], ["present.0.key"], axis=2),
            n("Concat", ["past_key_values.0.value", "v"], ["present.0.value"], axis=2),
            n("Transpose", ["present.0.key"], ["kt"], perm=[0, 1, 3, 2]),
            n("MatMul", ["q", "kt"], ["s0"]),
            n("Mul", ["s0", "scale"], ["s1"]),
            # key j is visible to query i when mask[j] == 1 and j <= i + (T - S)
            n("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT),
            n("Sub", ["one", "mf"], ["mpad"]),
            n("Mul", ["mpad", "neg"], ["mbias2"]),
            n("Unsqueeze", ["mbias2", "ax1"], ["mbias3"]),
            n("Unsqueeze", ["mbias3", "ax1"], ["mbias"]),
            n("Shape", ["attention_mask"], ["mshape"]),
            n("Gather", ["mshape", "idx1"], ["T"]),
            n("Shape", ["input_ids"], ["ishape"]),
            n("Gather", ["ishape", "idx1"], ["S"]),
            n("Concat", ["S", "T"], ["st"], axis=0),
            n("Sub", ["T", "S"], ["off1"]),
            n("Squeeze", ["off1", "ax0"], ["off"]),
            n("ConstantOfShape", ["st"], ["ones"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
            n("Trilu", ["ones", "off"], ["tril"], upper=0),
            n("Sub", ["one", "tril"], ["cpad"]),
            n("Mul", ["cpad", "neg"], ["cbias"]),
            n("Add", ["s1", "mbias"], ["s2"]),
            n("Add", ["s2", "cbias"], ["s3"]),
            n("Softmax", ["s3"], ["p"], axis=-1),
            n("MatMul", ["p", "present.0.value"], ["o4"]),
            n("Squeeze", ["o4", "ax1"], ["o"]),
            n("MatMul", ["o", "Wo"], ["oo"]),
            n("Add", ["x", "oo"], ["h"]),
            n("MatMul", ["h", "Wlm"], ["logits"]),
        ]
        kv = ["batch", 1, "past", dim]
        graph = helper.make_graph(
            nodes,
            "classic",
            [
                helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
                helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
                helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"]),
                helper.make_tensor_value_info("past_key_values.0.key", TensorProto.FLOAT, kv),
                helper.make_tensor_value_info("past_key_values.0.value", TensorProto.FLOAT, kv),
            ],
            [
                helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", vocab]),
                helper.make_tensor_value_info("present.0.key", TensorProto.FLOAT, ["batch", 1, "total", dim]),
                helper.make_tensor_value_info("present.0.value", TensorProto.FLOAT, ["batch", 1, "total", dim]),
            ],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        folder.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(folder / "model.onnx"))
        config = {
            "model": {
                "type": "toy",
                "context_length": context,
                "vocab_size": vocab,
                "eos_token_id": [1, 2],
                "pad_token_id": 0,
                "bos_token_id": 3,
                "decoder": {
                    "filename": "model.onnx",
                    "num_hidden_layers": 1,
                    "num_attention_heads": 1,
                    "num_key_value_heads": 1,
                    "head_size": dim,
                    "hidden_size": dim,
                    "inputs": {
                        "input_ids": "input_ids",
                        "attention_mask": "attention_mask",
                        "position_ids": "position_ids",
                    },
                },
            },
            "search": {"max_length": context, "past_present_share_buffer": False},
        }
        (folder / "genai_config.json").write_text(json.dumps(config))
        self.folder = folder

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Last-position logits of an unpadded sequence, full recompute in float64."""
        w = {k: v.astype(np.float64) for k, v in self.w.items()}
        x = w["E"][list(ids)] + w["P"][: len(ids)]
        q, k, v = x @ w["Wq"], x @ w["Wk"], x @ w["Wv"]
        s = q @ k.T / np.sqrt(self.dim)
        s = s + np.triu(np.full(s.shape, -1e9), 1)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        h = x + (p @ v) @ w["Wo"]
        return (h @ w["Wlm"])[-1]

    def greedy(self, ids: Sequence[int], new: int) -> List[int]:
        seq, out = list(ids), []
        for _ in range(new):
            t = int(np.argmax(self.logits(seq)))
            out.append(t)
            seq.append(t)
            if t in (1, 2):
                break
        return out


@pytest.fixture(scope="module")
def classic(tmp_path_factory) -> ClassicDecoder:
    pytest.importorskip("onnx")
    return ClassicDecoder(tmp_path_factory.mktemp("classic"))


def test_left_padding_for_models_with_position_ids(classic):
    prompts = [[5, 9, 14, 22, 7, 30], [11, 4], [17, 8, 25, 13]]
    new = 10
    with ml.Model(str(classic.folder)) as m:
        assert "position_ids" in m.input_names
        for p in prompts:  # one at a time
            tokens, logits = greedy(m, p, new=new)
            assert tokens == classic.greedy(p, new)
            np.testing.assert_allclose(logits[0], classic.logits(p), rtol=0, atol=ATOL)
        with (
            make_params(m, batch_size=3, max_length=6 + new, min_length=6 + new) as params,
            Generator(m, params) as gen,
        ):  # eos held back: every row runs to max_length
            gen.append_tokens(prompts)
            for i, p in enumerate(prompts):
                np.testing.assert_allclose(gen.get_logits()[i], classic.logits(p), rtol=0, atol=ATOL)
            while not gen.is_done():
                before = [len(gen.get_sequence(i)) for i in range(3)]
                last = gen.get_logits()
                gen.generate_next_token()
                for i in range(3):
                    seq = gen.get_sequence(i).tolist()
                    if len(seq) > before[i]:  # rows still running: their token came from these logits
                        np.testing.assert_allclose(last[i], classic.logits(seq[:-1]), rtol=0, atol=ATOL)
                        banned = classic.logits(seq[:-1])
                        banned[[1, 2]] = -np.inf  # the eos ids, held back by min_length
                        assert seq[-1] == int(np.argmax(banned))
            for i, p in enumerate(prompts):
                seq = gen.get_sequence(i).tolist()
                assert seq[: len(p)] == p and len(seq) == 6 + new
