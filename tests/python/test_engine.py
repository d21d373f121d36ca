"""The request engine (ml.Engine): continuous batching with an adapter set per request, on the committed
builder + Olive fixture (tests/python/fixtures/generation/lora) prepared with ``multilora prepare-batching``,
both kernels.

References, independent of the engine: each request generated alone by ``ml.Generator`` on the *unprepared*
folder with its own set (no slot table, no shared batch), and the recorded PyTorch + PEFT greedy tokens of
reference.json. Manual ``step()`` mode (worker=False) makes arrival steps deterministic.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pytest

import multilora as ml
from multilora import testing as T
from multilora.prepare_batching import prepare_batching

from support import assert_error

FX = Path(__file__).parent / "fixtures" / "generation"
LORA = FX / "lora"
ADAPTER = {name: str(LORA / "adapters" / f"{name}.onnx_adapter") for name in ("a", "b")}
REF = json.loads((FX / "reference.json").read_text())
PROMPTS: List[List[int]] = REF["prompt_ids"]
NEW = REF["new_tokens"]
LABEL = {(): "base", ("a",): "a", ("b",): "b", ("a", "b"): "a+b"}
SETS: List[List[str]] = [[], ["a"], ["b"], ["a", "b"]]
KERNELS = ("fused", "gather")
CONTEXT = 64


def _registry(model: ml.Model) -> ml.Adapters:
    reg = ml.Adapters(model)
    for name, path in ADAPTER.items():
        reg.load(path, name)
    return reg


@pytest.fixture(scope="module")
def prepared_folders(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    out = {}
    for kernel in KERNELS:
        d = tmp_path_factory.mktemp(f"engine_{kernel}") / "lora"
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


_ALONE: Dict[tuple, List[int]] = {}


def alone(plain, prompt: Sequence[int], names: Sequence[str], _ref: str = "", **search: object) -> List[int]:
    """The request generated alone by ml.Generator on the unprepared folder (cached; ``_ref`` tells registries
    with other adapter values apart)."""
    key = (tuple(prompt), tuple(names), tuple(sorted(search.items())), _ref)
    if key not in _ALONE:
        model, reg = plain
        with ml.GeneratorParams(model) as params:
            params.set_search_options(**search)
            if names:
                params.set_active_adapters(reg, list(names))
            with ml.Generator(model, params) as gen:
                gen.append_tokens(np.asarray(prompt, dtype=np.int32))
                while not gen.is_done():
                    gen.generate_next_token()
                _ALONE[key] = gen.get_sequence(0)[len(prompt) :].tolist()
    return _ALONE[key]


def params_for(model: ml.Model, reg: ml.Adapters, names: Sequence[str], **search: object) -> ml.GeneratorParams:
    p = ml.GeneratorParams(model)
    p.set_search_options(**search)
    p.set_active_adapters(reg, list(names))
    return p


def run_schedule(
    engine: ml.Engine, arrivals: Dict[int, List[Tuple[ml.GeneratorParams, List[int]]]], max_steps: int = 2000
) -> List[ml.Request]:
    """Manual stepping: the requests of arrivals[s] are submitted just before step s."""
    requests: List[ml.Request] = []
    step = 0
    while step < max_steps:
        for p, prompt in arrivals.get(step, []):
            requests.append(engine.submit(p, prompt))
        more = engine.step()
        step += 1
        if not more and step > max(arrivals):
            break
    assert step < max_steps
    return requests


# ---- correctness ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch,budget", [(4, 256), (3, 3), (2, 1)])
def test_every_request_equals_its_generation_alone(prepared, plain, batch, budget):
    """Staggered arrivals, rows reused (more requests than rows), chunked prefill (small budgets), four sets."""
    model, reg = prepared
    arrivals: Dict[int, List[Tuple[ml.GeneratorParams, List[int]]]] = {}
    expected = []
    for i in range(10):
        prompt = PROMPTS[i % 3]
        names = SETS[(i * 3 + 1) % 4]
        search = dict(max_length=len(prompt) + NEW + i % 4, do_sample=False)
        arrivals.setdefault((i * 5) % 13, []).append((params_for(model, reg, names, **search), prompt))
        expected.append(((i * 5) % 13, i, alone(plain, prompt, names, **search)))
    with ml.Engine(model, max_batch_size=batch, max_tokens_per_step=budget, worker=False) as engine:
        requests = run_schedule(engine, arrivals)
        got = [r.tokens() for r in requests]
        reasons = [r.finish_reason for r in requests]
        stats = engine.stats()
    # submission order: by arrival step, then index
    order = [e[2] for e in sorted(expected, key=lambda e: (e[0], e[1]))]
    assert got == order
    assert all(r in ("eos", "length") for r in reasons)
    assert stats.finished == 10 and stats.running == 0 and stats.queued == 0
    assert stats.prefill_tokens == sum(len(PROMPTS[i % 3]) for i in range(10))


def test_recorded_pytorch_peft_tokens(prepared):
    """Every prompt x set at once through the engine equals the recorded PyTorch + PEFT greedy ids."""
    model, reg = prepared
    jobs = []
    with ml.Engine(model, max_batch_size=16) as engine:
        for names in SETS:
            for p_index, prompt in enumerate(PROMPTS):
                p = params_for(model, reg, names, max_length=len(prompt) + NEW, do_sample=False)
                jobs.append((names, p_index, engine.submit(p, prompt)))
        for names, p_index, req in jobs:
            assert req.tokens() == REF["torch"][LABEL[tuple(names)]][p_index], (names, p_index)


def test_worker_with_submits_from_many_threads(prepared, plain):
    model, reg = prepared
    results: Dict[int, List[int]] = {}
    errors: List[BaseException] = []

    def client(engine: ml.Engine, k: int) -> None:
        try:
            for j in range(3):
                i = k * 3 + j
                prompt = PROMPTS[i % 3]
                p = params_for(model, reg, SETS[i % 4], max_length=len(prompt) + NEW)
                results[i] = list(engine.submit(p, prompt))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    with ml.Engine(model, max_batch_size=3, max_tokens_per_step=4) as engine:
        threads = [threading.Thread(target=client, args=(engine, k)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    for i in range(12):
        prompt = PROMPTS[i % 3]
        assert results[i] == alone(plain, prompt, SETS[i % 4], max_length=len(prompt) + NEW), i


def test_neighbours_cancelled_mid_generation(prepared, plain):
    """Requests cancelled while decoding or while queued free their rows; the others are unaffected."""
    model, reg = prepared
    search = lambda prompt: dict(max_length=len(prompt) + NEW, min_length=len(prompt) + NEW)  # noqa: E731
    with ml.Engine(model, max_batch_size=2, max_tokens_per_step=2, worker=False) as engine:
        keep = [engine.submit(params_for(model, reg, ["a"], **search(PROMPTS[0])), PROMPTS[0])]
        victim = engine.submit(params_for(model, reg, ["b"], **search(PROMPTS[1])), PROMPTS[1])
        queued_victim = engine.submit(params_for(model, reg, [], **search(PROMPTS[2])), PROMPTS[2])
        keep.append(engine.submit(params_for(model, reg, ["a", "b"], **search(PROMPTS[2])), PROMPTS[2]))
        for _ in range(8):
            engine.step()
        assert victim.read(timeout=0)  # it had produced tokens
        assert victim.cancel() is True
        assert queued_victim.cancel() is True
        assert victim.cancel() is False  # twice: harmless
        while engine.step():
            pass
        assert victim.finish_reason == "cancelled" and victim.error is None
        assert queued_victim.finish_reason == "cancelled" and queued_victim.usage.generated_tokens == 0
        assert engine.stats().finished == 4
        got = [r.tokens() for r in keep]
    assert got[0] == alone(plain, PROMPTS[0], ["a"], **search(PROMPTS[0]))
    assert got[1] == alone(plain, PROMPTS[2], ["a", "b"], **search(PROMPTS[2]))


def test_slot_evictions_and_waiting_sets(prepared_folders, plain):
    """batch_slots=2 holds one adapter set besides the base: a request whose set cannot get a slot waits at the
    head of the queue (FIFO: nothing overtakes it) until the set in use leaves; base-model rows run beside
    any set. Slots are rewritten (evictions) as the sets take turns; every request equals its run alone."""
    for kernel in KERNELS:
        opts = ml.ModelOptions()
        opts.set_batch_slots(2)
        with ml.Model(str(prepared_folders[kernel]), opts) as model, _registry(model) as reg:
            sets = [["a"], [], ["b"], ["a"], ["a", "b"], ["b"]]
            jobs = []
            with ml.Engine(model, max_batch_size=4, max_tokens_per_step=5, worker=False) as engine:
                requests = []
                for i, names in enumerate(sets):
                    prompt = PROMPTS[i % 3]
                    search = dict(max_length=len(prompt) + NEW)
                    requests.append(engine.submit(params_for(model, reg, names, **search), prompt))
                    jobs.append(alone(plain, prompt, names, **search))
                first: List[Optional[int]] = [None] * len(sets)
                last: List[Optional[int]] = [None] * len(sets)
                step = 0
                while engine.step() and step < 500:
                    step += 1
                    for i, r in enumerate(requests):
                        if first[i] is None and r.usage.generated_tokens:
                            first[i] = step
                        if last[i] is None and r.is_done():
                            last[i] = step
                assert [r.tokens() for r in requests] == jobs, kernel
            # active intervals [first, last]: no two different non-base sets overlap
            for i in range(len(sets)):
                for j in range(i + 1, len(sets)):
                    if sets[i] and sets[j] and sets[i] != sets[j]:
                        assert last[i] < first[j] or last[j] < first[i], (sets[i], sets[j], first, last)
            assert first[1] < last[0]  # the base request ran beside "a"
            assert first[3] > first[2]  # the second "a" did not overtake "b" (FIFO)


def test_sampling_and_search_options_per_request(prepared, plain):
    """Seeded sampling, top-k/p, temperature and repetition penalty per request equal Generator alone with the
    same options, next to greedy neighbours."""
    model, reg = prepared
    options = [
        dict(do_sample=True, seed=7, temperature=0.8, top_k=20, top_p=0.9),
        dict(do_sample=False, repetition_penalty=1.3),
        dict(do_sample=True, seed=11, temperature=1.5, top_k=0, top_p=0.7, repetition_penalty=1.1),
        dict(do_sample=False),
    ]
    with ml.Engine(model, max_batch_size=4, max_tokens_per_step=6, worker=False) as engine:
        jobs = []
        for i, opt in enumerate(options):
            prompt = PROMPTS[i % 3]
            search = dict(max_length=len(prompt) + NEW, min_length=len(prompt) + 4, **opt)
            jobs.append((engine.submit(params_for(model, reg, SETS[i], **search), prompt), prompt, SETS[i], search))
        for req, prompt, names, search in jobs:
            assert req.tokens() == alone(plain, prompt, names, **search), search


def test_stop_tokens_and_max_new_tokens(prepared, plain):
    model, reg = prepared
    prompt = PROMPTS[2]
    full = alone(plain, prompt, ["a", "b"], max_length=len(prompt) + NEW)  # greedy, no early end
    assert len(full) == NEW
    stop = full[5]
    first = full.index(stop)
    with ml.Engine(model, max_batch_size=2, worker=False) as engine:
        p = params_for(model, reg, ["a", "b"], max_length=len(prompt) + NEW)
        p.set_stop_tokens([stop, 95])
        r_stop = engine.submit(p, prompt)
        p2 = params_for(model, reg, ["a", "b"], max_length=len(prompt) + NEW, max_new_tokens=4)
        r_len = engine.submit(p2, prompt)
        assert r_stop.tokens() == full[: first + 1]
        assert r_stop.finish_reason == "stop"
        assert r_len.tokens() == full[:4]
        assert r_len.finish_reason == "length"
        assert r_len.usage.generated_tokens == 4 and r_len.usage.prompt_tokens == len(prompt)
        assert r_len.usage.ttft is not None and r_len.usage.ttft >= r_len.usage.queue_time >= 0
    # Generator honours both the same way.
    with ml.GeneratorParams(plain[0]) as gp:
        gp.set_search_options(max_length=len(prompt) + NEW, max_new_tokens=4)
        gp.set_active_adapters(plain[1], ["a", "b"])
        gp.set_stop_tokens([stop])
        with ml.Generator(plain[0], gp) as gen:
            gen.append_tokens(np.asarray(prompt, dtype=np.int32))
            while not gen.is_done():
                gen.generate_next_token()
            assert gen.get_sequence(0)[len(prompt) :].tolist() == full[: min(4, first + 1)]


def test_async_stream_does_not_block_the_loop(prepared, plain):
    model, reg = prepared

    async def main(engine: ml.Engine) -> Tuple[List[List[int]], int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        async def collect(names: List[str], prompt: List[int]) -> List[int]:
            p = params_for(model, reg, names, max_length=len(prompt) + NEW)
            return [t async for t in engine.submit(p, prompt).stream()]

        t = asyncio.create_task(ticker())
        out = await asyncio.gather(*(collect(SETS[i], PROMPTS[i % 3]) for i in range(4)))
        done.set()
        await t
        return list(out), ticks

    for worker in (True, False):  # without a worker, the streams' waits step the engine
        with ml.Engine(model, max_batch_size=4, worker=worker) as engine:
            out, ticks = asyncio.run(main(engine))
        assert ticks > 0
        for i in range(4):
            assert out[i] == alone(plain, PROMPTS[i % 3], SETS[i], max_length=len(PROMPTS[i % 3]) + NEW)


def test_generate_offline_batch(prepared, plain):
    model, reg = prepared
    params = [params_for(model, reg, SETS[i], max_length=len(PROMPTS[i % 3]) + NEW) for i in range(4)]
    prompts = [PROMPTS[i % 3] for i in range(4)]
    for worker in (True, False):
        with ml.Engine(model, max_batch_size=2, worker=worker) as engine:
            got = engine.generate(prompts, params)
        assert got == [alone(plain, prompts[i], SETS[i], max_length=len(prompts[i]) + NEW) for i in range(4)]


def test_unloading_an_adapter_during_a_request_is_safe(prepared_folders, plain):
    with ml.Model(str(prepared_folders["fused"])) as model, _registry(model) as reg:
        prompt = PROMPTS[0]
        with ml.Engine(model, max_batch_size=2, worker=False) as engine:
            req = engine.submit(params_for(model, reg, ["a"], max_length=len(prompt) + NEW), prompt)
            engine.step()
            reg.unload("a")
            assert req.tokens() == alone(plain, prompt, ["a"], max_length=len(prompt) + NEW)


# ---- lifetimes and errors -------------------------------------------------------------------------------


def test_close_cancels_every_request_with_closed(prepared):
    model, reg = prepared
    engine = ml.Engine(model, max_batch_size=1, worker=False)
    running = engine.submit(params_for(model, reg, ["a"], max_length=40), PROMPTS[0])
    queued = engine.submit(params_for(model, reg, ["b"], max_length=40), PROMPTS[1])
    engine.step()
    engine.step()
    engine.close()
    for r in (running, queued):
        assert r.is_done() and r.finish_reason == "cancelled"
        assert isinstance(r.error, ml.ClosedError)
    assert running.usage.generated_tokens >= 1
    with pytest.raises(ml.ClosedError):
        engine.submit(params_for(model, reg, [], max_length=40), PROMPTS[0])
    engine.close()  # idempotent


def test_submit_after_native_close_names_closed(prepared):
    """The C status: an engine closed through the native object (not the Python wrapper) refuses with CLOSED."""
    model, reg = prepared
    engine = ml.Engine(model, max_batch_size=1, worker=False)
    engine._n().shutdown()
    with pytest.raises(ml.ClosedError) as e:
        engine.submit(params_for(model, reg, [], max_length=40), PROMPTS[0])
    assert_error(e, ml.ClosedError, "MLORA_STATUS_CLOSED", "closed")
    with pytest.raises(ml.ClosedError):
        engine.step()
    engine.close()


def test_request_released_before_and_after_it_finishes(prepared, plain):
    model, reg = prepared
    with ml.Engine(model, max_batch_size=2, worker=False) as engine:
        early = engine.submit(params_for(model, reg, ["b"], max_length=40), PROMPTS[1])
        other = engine.submit(params_for(model, reg, ["a"], max_length=len(PROMPTS[0]) + NEW), PROMPTS[0])
        engine.step()
        early.close()  # released while running: cancelled, its row freed
        assert other.tokens() == alone(plain, PROMPTS[0], ["a"], max_length=len(PROMPTS[0]) + NEW)
        assert engine.stats().finished == 2
        other.close()  # after finishing
        with pytest.raises(ml.InvalidHandleError):
            other.read(timeout=0)  # read after release
        with pytest.raises(ml.InvalidHandleError):
            list(early)


def test_bad_input_is_named(prepared, plain):
    model, reg = prepared
    with ml.Engine(model, max_batch_size=1, max_queue=1, worker=False) as engine:
        # a prompt longer than the context
        with pytest.raises(ml.ShapeMismatchError) as e:
            engine.submit(params_for(model, reg, [], max_length=CONTEXT), [5] * (CONTEXT + 1))
        assert_error(e, ml.ShapeMismatchError, "MLORA_STATUS_SHAPE_MISMATCH", "context length")
        with pytest.raises(ml.ShapeMismatchError) as e:
            engine.submit(params_for(model, reg, [], max_length=10), [5] * 10)
        assert_error(e, ml.ShapeMismatchError, "MLORA_STATUS_SHAPE_MISMATCH", "no room")
        # empty prompt, ids outside the vocabulary
        with pytest.raises(ml.InvalidArgumentError):
            engine.submit(params_for(model, reg, []), [])
        with pytest.raises(ml.InvalidArgumentError) as e:
            engine.submit(params_for(model, reg, []), [5, 96])
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "vocabulary")
        # params of another model (one whose LoRA inputs differ from the engine's: the fixture without LoRA)
        with ml.Model(str(LORA.parent / "base")) as other:
            with pytest.raises(ml.InvalidArgumentError) as e:
                engine.submit(ml.GeneratorParams(other), PROMPTS[0])
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "not for the engine's model")
        # adapters of another model, or not loaded
        p = ml.GeneratorParams(model)
        with pytest.raises(ml.InvalidArgumentError):
            p.set_active_adapters(plain[1], ["a"])
        with pytest.raises(ml.AdapterNotFoundError):
            p.set_active_adapters(reg, ["nope"])
        # invalid search options; negative / huge max tokens
        with pytest.raises(ml.InvalidArgumentError):
            p.set_search_options(top_p=2.0)
        for bad in (-1, 10**9):
            with pytest.raises(ml.InvalidArgumentError) as e:
                p.set_search_options(max_new_tokens=bad)
            assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "max_new_tokens")
        with pytest.raises(ml.InvalidArgumentError):
            p.set_stop_tokens([-1])
        # per-row sets / batch_size > 1 are not one request
        p.set_search_options(batch_size=2)
        with pytest.raises(ml.InvalidArgumentError) as e:
            engine.submit(p, PROMPTS[0])
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "batch_size")
        # the queue limit
        engine.submit(params_for(model, reg, [], max_length=20), PROMPTS[0])
        with pytest.raises(ml.BusyError) as e:
            engine.submit(params_for(model, reg, [], max_length=20), PROMPTS[0])
        assert_error(e, ml.BusyError, "MLORA_STATUS_BUSY", "queue is full")
        # engine options
    for kwargs in (dict(max_batch_size=0), dict(max_tokens_per_step=0)):
        with pytest.raises(ml.InvalidArgumentError):
            ml.Engine(model, **kwargs)
    with ml.Engine(model) as engine, pytest.raises(ml.InvalidArgumentError) as e:
        engine.step()  # it has its own worker
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "worker")


def test_plain_folder_is_prepared_into_the_cache(plain, tmp_path, monkeypatch):
    """ml.Engine over an unprepared folder prepares a copy once into $MULTILORA_CACHE_DIR and serves the plain
    model's own params and adapters: every request equals ml.Generator alone on the plain folder."""
    monkeypatch.setenv("MULTILORA_CACHE_DIR", str(tmp_path))
    model, reg = plain
    sets = [[], ["a"], ["b"], ["a", "b"]]
    for round_ in range(2):  # the second engine reuses the cached copy
        with ml.Engine(model, max_batch_size=4) as engine:
            reqs = [
                (engine.submit(params_for(model, reg, s, max_length=len(p) + 8), p), p, s)
                for p in PROMPTS
                for s in sets
            ]
            for req, prompt, s in reqs:
                assert req.tokens() == alone(plain, prompt, s, max_length=len(prompt) + 8), (prompt, s)
        assert len(os.listdir(tmp_path / "prepared")) == 1, round_
    # The cached copy has the base graph (its requests without adapters ran there).
    (key,) = os.listdir(tmp_path / "prepared")
    assert os.path.isfile(tmp_path / "prepared" / key / "model.base.onnx")


def test_the_prepare_cache_key_has_a_format_version(plain, monkeypatch, tmp_path):
    """A copy prepared by an older layout (before the base graph) is not reused: the key changes with it."""
    from multilora import engine as E

    key = E._folder_key(plain[0].path)
    monkeypatch.setattr(E, "_PREPARE_FORMAT", E._PREPARE_FORMAT - 1)
    assert E._folder_key(plain[0].path) != key


def test_lora_dtype_prepares_a_half_slot_copy(plain, tmp_path, monkeypatch):
    """ml.Engine(..., lora_dtype="float16") prepares its own copy (another cache key) with float16 slots; the
    plain model's float32 adapters are rounded to float16 once, so every request equals ml.Generator alone on
    the plain folder with adapters holding those rounded values (numpy's astype(float16), upcast)."""
    monkeypatch.setenv("MULTILORA_CACHE_DIR", str(tmp_path / "cache"))
    model, reg = plain
    rounded = ml.Adapters(model)
    for n, path in ADAPTER.items():
        values = ml.read_adapter(path).parameters
        f = str(tmp_path / f"{n}_rounded.onnx_adapter")
        T.write_ort_adapter(f, {k: np.asarray(v).astype(np.float16).astype(np.float32) for k, v in values.items()})
        rounded.load(f, n)
    with rounded:
        for dt in ("float16", "auto"):
            with ml.Engine(model, max_batch_size=4, lora_dtype=dt, worker=False) as engine:
                runs = engine._runs
                assert {i.dtype for i in runs.lora_inputs} == {"float32" if dt == "auto" else dt}
                reqs = [
                    (engine.submit(params_for(model, reg, s, max_length=len(p) + 8), p), p, s)
                    for p in PROMPTS
                    for s in SETS
                ]
                for req, prompt, s in reqs:
                    ref = (rounded, reg)[dt == "auto"]
                    assert req.tokens() == alone((model, ref), prompt, s, max_length=len(prompt) + 8, _ref=dt), (dt, s)
        assert len(os.listdir(tmp_path / "cache" / "prepared")) == 2  # the slot dtype is part of the key
        with ml.Engine(model, lora_dtype="float16", worker=False) as engine:  # reused, not prepared again
            assert len(os.listdir(tmp_path / "cache" / "prepared")) == 2
            prepared_half = engine._runs.path
        with pytest.raises(ml.InvalidArgumentError) as e:
            ml.Engine(model, lora_dtype="float8")
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "lora_dtype", "float8")
        with ml.Model(prepared_half) as half:  # prepared already, with other slots than asked for
            with pytest.raises(ml.InvalidArgumentError) as e:
                ml.Engine(half, lora_dtype="bfloat16")
            assert_error(
                e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "float16", "--lora-dtype bfloat16"
            )
            ml.Engine(half, lora_dtype="float16", worker=False).close()


def test_poll_and_timeout_reads(prepared):
    model, reg = prepared
    with ml.Engine(model, max_batch_size=1, worker=False) as engine:
        req = engine.submit(params_for(model, reg, ["a"], max_length=len(PROMPTS[1]) + 3), PROMPTS[1])
        assert req.read(timeout=0) == []  # nothing yet: a poll returns at once
        assert req.read(timeout=0.01) == []  # a timeout returns empty
        assert not req.is_done() and req.finish_reason is None
        assert req.usage.ttft is None
        while engine.step():
            pass
        assert req.is_done()
        got = req.read(timeout=0)
        assert len(got) == req.usage.generated_tokens > 0
        assert req.read(timeout=None) == []  # finished and drained: returns at once
