"""Generation with one adapter set per sequence (GeneratorParams/Generator.set_active_adapters_per_row) on the
committed builder + Olive fixture (tests/python/fixtures/generation/lora) prepared with
``multilora prepare-batching``, both kernels.

References, independent of the per-row path: each sequence generated alone on the *unprepared* folder with
its own set (GeneratorParams/Generator.set_active_adapters), and the recorded PyTorch + PEFT greedy tokens
of reference.json (see test_generation.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
import pytest

import multilora as ml
from multilora.generation import Generator, GeneratorParams
from multilora.prepare_batching import prepare_batching

from support import assert_error

FX = Path(__file__).parent / "fixtures" / "generation"
LORA = FX / "lora"
ADAPTER = {name: str(LORA / "adapters" / f"{name}.onnx_adapter") for name in ("a", "b")}
REF = json.loads((FX / "reference.json").read_text())
PROMPTS: List[List[int]] = REF["prompt_ids"]
NEW = REF["new_tokens"]
EOS = REF["eos_token_id"]
LABEL = {(): "base", ("a",): "a", ("b",): "b", ("a", "b"): "a+b"}
KERNELS = ("fused", "gather")
ATOL = 1e-4


def _registry(model: ml.Model) -> ml.Adapters:
    reg = ml.Adapters(model)
    for name, path in ADAPTER.items():
        reg.load(path, name)
    return reg


@pytest.fixture(scope="module")
def prepared_folders(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """The fixture folder with model.onnx rewritten (genai_config.json, tokenizer and adapters copied)."""
    out = {}
    for kernel in KERNELS:
        d = tmp_path_factory.mktemp(f"gen_{kernel}") / "lora"
        shutil.copytree(LORA, d, ignore=shutil.ignore_patterns("model.onnx"))
        prepare_batching(LORA / "model.onnx", d / "model.onnx", kernel=kernel)
        out[kernel] = d
    return out


@pytest.fixture(scope="module")
def plain() -> Iterator[Tuple[ml.Model, ml.Adapters]]:
    model = ml.Model(str(LORA))
    reg = _registry(model)
    yield model, reg
    reg.close()
    model.close()


@pytest.fixture(params=KERNELS)
def prepared(request, prepared_folders) -> Iterator[Tuple[ml.Model, ml.Adapters]]:
    model = ml.Model(str(prepared_folders[request.param]))
    reg = _registry(model)
    yield model, reg
    reg.close()
    model.close()


def _alone(
    model: ml.Model,
    reg: ml.Adapters,
    prompt: Sequence[int],
    schedule: Sequence[Sequence[str]],
    max_length: int,
    **search: object,
) -> Tuple[List[int], np.ndarray]:
    """One sequence generated alone on the unprepared model; schedule[i] = the set for step i (switched with
    Generator.set_active_adapters before the step; the last entry holds for the remaining steps). Returns the
    generated tokens and the logits of every step."""
    with GeneratorParams(model) as params:
        params.set_search_options(max_length=max_length, **search)
        if schedule[0]:
            params.set_active_adapters(reg, list(schedule[0]))
        with Generator(model, params) as gen:
            gen.append_tokens(np.asarray(prompt, dtype=np.int32))
            logits = []
            step = 0
            while not gen.is_done():
                if step and step < len(schedule) and list(schedule[step]) != list(schedule[step - 1]):
                    if schedule[step]:
                        gen.set_active_adapters(reg, list(schedule[step]))
                    else:
                        gen.clear_active_adapters()
                logits.append(gen.get_logits()[0].copy())
                gen.generate_next_token()
                step += 1
            return gen.get_sequence(0)[len(prompt) :].tolist(), np.stack(logits)


@pytest.mark.parametrize(
    "rows,prompts",
    [
        ([["a"], [], ["b"], ["a", "b"]], [0, 1, 2, 0]),  # prompts of lengths 7, 5, 9, 7
        ([["b"], ["a"], ["b"]], [1, 1, 2]),  # a repeated set
    ],
)
def test_each_sequence_gets_its_own_tokens(prepared, plain, rows, prompts):
    model, reg = prepared
    longest = max(len(PROMPTS[p]) for p in prompts)
    max_length = longest + NEW
    with GeneratorParams(model) as params:
        params.set_search_options(batch_size=len(rows), max_length=max_length)
        params.set_active_adapters_per_row(reg, rows)
        with Generator(model, params) as gen:
            gen.append_tokens([PROMPTS[p] for p in prompts])
            steps = []
            while not gen.is_done():
                steps.append(gen.get_logits().copy())
                gen.generate_next_token()
            sequences = [gen.get_sequence(i).tolist() for i in range(len(rows))]
    for i, (row, p) in enumerate(zip(rows, prompts)):
        prompt = PROMPTS[p]
        assert sequences[i][: len(prompt)] == prompt
        generated = sequences[i][len(prompt) :]
        tokens, logits = _alone(plain[0], plain[1], prompt, [row], max_length)
        assert generated == tokens, f"row {i} {row}"
        np.testing.assert_allclose(np.stack([s[i] for s in steps[: len(logits)]]), logits, rtol=0, atol=ATOL)
        # The recorded PyTorch + PEFT tokens (NEW steps from this prompt; a shorter prompt may run longer here).
        ref = REF["torch"][LABEL[tuple(row)]][p]
        assert generated[: len(ref)] == ref, f"row {i} {row}"


def test_switching_per_row_sets_between_steps(prepared, plain):
    """Generator.set_active_adapters_per_row between steps equals each sequence run alone with the same
    switches (Generator.set_active_adapters on the unprepared model)."""
    model, reg = prepared
    prompt = PROMPTS[1]
    steps = 8
    # schedules[row][step]
    schedules: List[List[List[str]]] = [
        [["a"]] * 3 + [["b"]] * 3 + [[]] * 2,
        [[]] * 3 + [["a", "b"]] * 3 + [["a"]] * 2,
        [["b"]] * 3 + [["b"]] * 3 + [["a", "b"]] * 2,
    ]
    search = dict(max_length=len(prompt) + steps, min_length=len(prompt) + steps)  # no eos: all 8 steps
    with GeneratorParams(model) as params:
        params.set_search_options(batch_size=3, **search)
        params.set_active_adapters_per_row(reg, [s[0] for s in schedules])
        with Generator(model, params) as gen:
            gen.append_tokens([prompt] * 3)
            logits = []
            for step in range(steps):
                if step in (3, 6):
                    gen.set_active_adapters_per_row(reg, [s[step] for s in schedules])
                logits.append(gen.get_logits().copy())
                gen.generate_next_token()
            assert gen.is_done()
            sequences = [gen.get_sequence(i)[len(prompt) :].tolist() for i in range(3)]
    for i, schedule in enumerate(schedules):
        tokens, ref_logits = _alone(plain[0], plain[1], prompt, schedule, **search)
        assert sequences[i] == tokens, f"row {i}"
        np.testing.assert_allclose(np.stack([lg[i] for lg in logits]), ref_logits, rtol=0, atol=ATOL)
    # The rows did not all get the same tokens (the sets matter here).
    assert len({tuple(s) for s in sequences}) > 1


def test_switching_between_per_row_and_one_set(prepared, plain):
    model, reg = prepared
    prompt = PROMPTS[0]
    search = dict(max_length=len(prompt) + 6, min_length=len(prompt) + 6)
    with GeneratorParams(model) as params:
        params.set_search_options(batch_size=2, **search)
        params.set_active_adapters(reg, ["b"])  # one set for both rows first
        with Generator(model, params) as gen:
            gen.append_tokens([prompt, prompt])
            for step in range(6):
                if step == 2:
                    gen.set_active_adapters_per_row(reg, [["a"], []])
                if step == 4:
                    gen.set_active_adapters(reg, ["a", "b"])
                gen.generate_next_token()
            sequences = [gen.get_sequence(i)[len(prompt) :].tolist() for i in range(2)]
    schedules = [
        [["b"], ["b"], ["a"], ["a"], ["a", "b"], ["a", "b"]],
        [["b"], ["b"], [], [], ["a", "b"], ["a", "b"]],
    ]
    for i, schedule in enumerate(schedules):
        assert sequences[i] == _alone(plain[0], plain[1], prompt, schedule, **search)[0], f"row {i}"


# ---- errors ---------------------------------------------------------------------------------------------


def test_batch_size_must_match_the_rows(prepared):
    model, reg = prepared
    with GeneratorParams(model) as params:
        params.set_search_options(batch_size=2, max_length=20)
        params.set_active_adapters_per_row(reg, [["a"], [], ["b"]])
        with pytest.raises(ml.InvalidArgumentError) as e:
            Generator(model, params)
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "3 rows", "batch_size is 2")
        params.set_search_options(batch_size=3)
        with Generator(model, params) as gen:
            with pytest.raises(ml.InvalidArgumentError) as e:
                gen.set_active_adapters_per_row(reg, [["a"], ["b"]])
            assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "2 rows", "batch_size is 3")


def test_unprepared_model_is_an_error(plain):
    model, reg = plain
    with GeneratorParams(model) as params:
        with pytest.raises(ml.InvalidArgumentError) as e:
            params.set_active_adapters_per_row(reg, [["a"], []])
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "prepare-batching")
        params.set_search_options(batch_size=2, max_length=20)
        with Generator(model, params) as gen:
            with pytest.raises(ml.InvalidArgumentError) as e:
                gen.set_active_adapters_per_row(reg, [["a"], []])
            assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "prepare-batching")


def test_registry_of_another_model_is_an_error(prepared_folders):
    path = str(prepared_folders["fused"])
    with ml.Model(path) as model, ml.Model(path) as another, GeneratorParams(model) as params:
        reg = _registry(another)
        with pytest.raises(ml.InvalidArgumentError) as e:
            params.set_active_adapters_per_row(reg, [["a"], []])
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "registry")
        reg.close()


@pytest.mark.parametrize("kernel", KERNELS)
def test_generators_share_a_small_slot_table(prepared_folders, plain, kernel):
    """Two generators stepped in turns on one model with S=3 (two resident sets), each needing two sets: slots
    are pinned per step, not per generator (else the second would wait forever), and every token is right."""
    import threading

    prompt = PROMPTS[2]
    search = dict(max_length=len(prompt) + 6, min_length=len(prompt) + 6)
    jobs = [([["a"], ["b"]], None), ([["a", "b"], ["a"]], [[1.0, 1.0], [0.5]])]
    results: Dict[int, List[List[int]]] = {}
    errors: List[BaseException] = []

    def interleave() -> None:
        try:
            with ml.Model(str(prepared_folders[kernel]), batch_slots=3) as model:
                reg = _registry(model)
                gens, all_params = [], []
                for rows, weights in jobs:
                    params = GeneratorParams(model)
                    params.set_search_options(batch_size=2, **search)
                    params.set_active_adapters_per_row(reg, rows, weights)
                    gen = Generator(model, params)
                    gen.append_tokens([prompt, prompt])
                    gens.append(gen)
                    all_params.append(params)
                for _ in range(6):
                    for gen in gens:
                        gen.generate_next_token()
                for j, gen in enumerate(gens):
                    results[j] = [gen.get_sequence(i)[len(prompt) :].tolist() for i in range(2)]
                    gen.close()
                for params in all_params:
                    params.close()
                assert model.batch_slots.resident <= 2
                reg.close()
        except BaseException as e:  # noqa: BLE001 - reported by the test's thread
            errors.append(e)

    th = threading.Thread(target=interleave, daemon=True)
    th.start()
    th.join(timeout=120)
    assert not th.is_alive(), "a step never finished (slots pinned across steps?)"
    if errors:
        raise errors[0]
    for j, (rows, weights) in enumerate(jobs):
        for i, row in enumerate(rows):
            w = weights[i] if weights is not None else [1.0] * len(row)
            with GeneratorParams(plain[0]) as params:
                params.set_search_options(**search)
                params.set_active_adapters(plain[1], row, w)
                with Generator(plain[0], params) as gen:
                    gen.append_tokens(np.asarray(prompt, dtype=np.int32))
                    while not gen.is_done():
                        gen.generate_next_token()
                    assert results[j][i] == gen.get_sequence(0)[len(prompt) :].tolist(), (j, i)
