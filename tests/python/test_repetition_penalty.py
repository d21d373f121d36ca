"""The repetition penalty on logits that are negative: GenAI's rule divides a seen token's positive logit by
the penalty and multiplies a negative one. The committed generation fixture's top logits are positive, so a
penalty applied the wrong way round to negative logits went unnoticed; here the fixture's LM head output is
lowered by a constant (greedy choices unchanged), every logit is negative, and the chosen tokens are checked
step by step against an independent numpy implementation of the rule (and against onnxruntime-genai itself
when it is installed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import numpy as np
import pytest

import multilora as ml
from multilora import testing as T

FX = Path(__file__).resolve().parent / "fixtures" / "generation"
PROMPTS: List[List[int]] = json.loads((FX / "reference.json").read_text())["prompt_ids"]
PENALTY = 1.7
SHIFT = 100.0
NEW = 12


@pytest.fixture(scope="module")
def negative_folder(tmp_path_factory) -> str:
    return T.shift_logits_folder(FX / "base", tmp_path_factory.mktemp("penalty") / "negative", SHIFT)


def _penalised(logits: np.ndarray, history: List[int], penalty: float) -> np.ndarray:
    """GenAI's repetition penalty, written independently: each distinct token seen so far (prompt and
    generated) has its logit divided by the penalty if positive, multiplied by it if negative."""
    x = logits.astype(np.float64).copy()
    for t in set(history):
        x[t] = x[t] / penalty if x[t] > 0 else x[t] * penalty
    return x


def _run(model: ml.Model, prompt: List[int], penalty: float):
    params = ml.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + NEW, do_sample=False, repetition_penalty=penalty)
    gen = ml.Generator(model, params)
    gen.append_tokens(np.asarray(prompt, dtype=np.int32))
    steps = []
    while not gen.is_done():
        gen.generate_next_token()
        seq = gen.get_sequence(0).tolist()
        steps.append((gen.get_logits()[0].copy(), seq[-1], seq[:-1]))
    return gen.get_sequence(0)[len(prompt) :].tolist(), steps


def test_penalty_on_negative_logits_follows_genai_rule(negative_folder):
    changed = 0
    with ml.Model(negative_folder) as model:
        for prompt in PROMPTS:
            _, steps = _run(model, prompt, PENALTY)
            for logits, token, history in steps:
                assert (logits < 0).all(), "the shifted fixture must give only negative logits"
                assert token == int(np.argmax(_penalised(logits, history, PENALTY)))
                changed += token != int(np.argmax(logits))
    # The case discriminates: without the penalty (or with it applied the wrong way) some choice differs.
    assert changed > 0


def test_shift_changes_nothing_without_a_penalty(negative_folder):
    """The fixture's shift alone keeps every greedy choice (so the penalty is what the test above sees)."""
    with ml.Model(str(FX / "base")) as base, ml.Model(negative_folder) as neg:
        for prompt in PROMPTS:
            assert _run(base, prompt, 1.0)[0] == _run(neg, prompt, 1.0)[0]


def test_penalty_on_negative_logits_matches_onnxruntime_genai(negative_folder):
    og = pytest.importorskip("onnxruntime_genai")
    model = og.Model(negative_folder)
    with ml.Model(negative_folder) as ours:
        for prompt in PROMPTS:
            params = og.GeneratorParams(model)
            params.set_search_options(max_length=len(prompt) + NEW, do_sample=False, repetition_penalty=PENALTY)
            gen = og.Generator(model, params)
            gen.append_tokens(np.asarray(prompt, dtype=np.int32))
            while not gen.is_done():
                gen.generate_next_token()
            theirs = list(gen.get_sequence(0))[len(prompt) :]
            mine = _run(ours, prompt, PENALTY)[0]
            # onnxruntime-genai leaves a final eos out of the sequence; multilora keeps it.
            assert mine[: len(theirs)] == theirs
