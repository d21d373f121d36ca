"""close() and setters racing calls on other threads (issue 11, item 1): a call holds every object it uses
until it returns, so a racing close() makes it either complete (with the right result) or fail with
InvalidHandleError — never a crash. Calls that must not overlap on one generator fail with BusyError.

Each test repeats its race a bounded number of times; before the fix they crashed the interpreter
(SIGSEGV / heap-use-after-free under ASan). Run them under scripts/sanitize.sh to see a use-after-free
that happens not to crash."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, List

import multilora as ml
from multilora import testing as T
from multilora.generation import Generator, GeneratorParams

from support import assert_close

FX = Path(__file__).parent / "fixtures" / "generation" / "lora"
ADAPTER = {name: str(FX / "adapters" / f"{name}.onnx_adapter") for name in ("a", "b")}
PROMPT = [1, 5, 9, 3]


def _threads(targets: List[Callable[[], None]]) -> List[threading.Thread]:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    return threads


def _join(threads: List[threading.Thread]) -> None:
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hangs"


def _closed(e: BaseException) -> bool:
    """The one way a call that loses the race with close() may fail."""
    return isinstance(e, ml.InvalidHandleError) and e.status_name == "MLORA_STATUS_INVALID_HANDLE"


def _race(targets: List[Callable[[], None]], release: Callable[[], None], running: threading.Event) -> None:
    """Starts the threads, waits until one of them made progress (calls are in flight), runs `release`."""
    threads = _threads(targets)
    running.wait(30)
    release()
    _join(threads)


def _model_close_round(path: str, ids, expected, errors: List[str], completed: List[int]) -> None:
    model = ml.Model(path, intra_op_threads=1)
    running = threading.Event()

    def runner() -> None:
        try:
            for _ in range(30):
                out = model.run(None, {"input_ids": ids})
                assert_close(out[0], expected, rtol=1e-4, atol=1e-4)
                completed[0] += 1
                running.set()
        except BaseException as e:  # noqa: BLE001
            if not _closed(e):
                errors.append(f"{type(e).__name__}: {e}")
        running.set()

    _race([runner] * 3, model.close, running)


def test_model_close_while_threads_run(lora_model, baseline):
    ids = T.make_input_ids(lora_model, batch=8, seq=64, seed=3)
    expected = baseline.run(ids)
    errors: List[str] = []
    completed = [0]
    for _ in range(15):
        _model_close_round(lora_model.path, ids, expected, errors, completed)
    assert not errors, errors[:5]
    assert completed[0] > 0


def _greedy_tokens(gmodel, gregistry, names, steps):
    with GeneratorParams(gmodel) as p:
        p.set_search_options(max_length=len(PROMPT) + steps, do_sample=False)
        if names:
            p.set_active_adapters(gregistry, names)
        with Generator(gmodel, p) as g:
            g.append_tokens(PROMPT)
            while not g.is_done():
                g.generate_next_token()
            return list(g.get_sequence(0))


def _generator_close_round(gmodel, gregistry, reference, errors: List[str]) -> None:
    with GeneratorParams(gmodel) as p:
        p.set_search_options(max_length=len(PROMPT) + 24, do_sample=False)
        p.set_active_adapters(gregistry, ["a"])
        gen = Generator(gmodel, p)
    gen.append_tokens(PROMPT)
    running = threading.Event()

    def stepper() -> None:
        try:
            while not gen.is_done():
                gen.generate_next_token()
                running.set()
            assert list(gen.get_sequence(0)) == reference
        except BaseException as e:  # noqa: BLE001
            if not _closed(e):
                errors.append(f"{type(e).__name__}: {e}")
        running.set()

    _race([stepper], gen.close, running)


def test_generator_close_during_generate_next_token(gmodel, gregistry):
    reference = _greedy_tokens(gmodel, gregistry, ["a"], 24)
    errors: List[str] = []
    for _ in range(20):
        _generator_close_round(gmodel, gregistry, reference, errors)
    assert not errors, errors[:5]


def _adapters_close_round(gmodel, errors: List[str]) -> None:
    registry = ml.Adapters(gmodel)
    running = threading.Event()

    def loader(k: int) -> None:
        try:
            for i in range(20):
                registry.load(ADAPTER["a" if i % 2 else "b"], f"{k}-{i}")
                running.set()
        except BaseException as e:  # noqa: BLE001
            if not _closed(e):
                errors.append(f"{type(e).__name__}: {e}")
        running.set()

    _race([lambda: loader(0), lambda: loader(1)], registry.close, running)


def test_adapters_close_during_load(gmodel):
    errors: List[str] = []
    for _ in range(20):
        _adapters_close_round(gmodel, errors)
    assert not errors, errors[:5]


def _params_close_round(gmodel, gregistry, errors: List[str]) -> None:
    params = GeneratorParams(gmodel)
    params.set_search_options(max_length=16)
    params.set_active_adapters(gregistry, ["a", "b"], [0.5, 1.0])
    running = threading.Event()

    def creator() -> None:
        try:
            for _ in range(30):
                with Generator(gmodel, params) as g:
                    g.append_tokens(PROMPT)
                running.set()
        except BaseException as e:  # noqa: BLE001
            if not _closed(e):
                errors.append(f"{type(e).__name__}: {e}")
        running.set()

    _race([creator], params.close, running)


def test_params_close_while_another_thread_creates_generators(gmodel, gregistry):
    errors: List[str] = []
    for _ in range(20):
        _params_close_round(gmodel, gregistry, errors)
    assert not errors, errors[:5]


def _switch_round(gmodel, gregistry, errors: List[str], busy: List[int]) -> None:
    with GeneratorParams(gmodel) as p:
        p.set_search_options(max_length=len(PROMPT) + 40, do_sample=False)
        gen = Generator(gmodel, p)
    gen.append_tokens(PROMPT)
    start = threading.Barrier(2)
    stop = threading.Event()

    def stepper() -> None:
        start.wait()
        try:
            while True:
                try:
                    if gen.is_done():
                        break
                    gen.generate_next_token()
                except ml.BusyError:
                    busy[0] += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(f"stepper {type(e).__name__}: {e}")
        finally:
            stop.set()

    def switcher() -> None:
        start.wait()
        i = 0
        while not stop.is_set() and i < 400:
            try:
                # a new composite each time (weights vary), so the replaced set is freed at once
                names = [["a"], ["a", "b"], []][i % 3]
                gen.set_active_adapters(gregistry, names, [0.5 + 0.01 * (i % 50)] * len(names))
            except ml.BusyError as e:
                busy[0] += 1
                if "busy" not in str(e) or e.status_name != "MLORA_STATUS_BUSY":
                    errors.append(f"switcher: {e}")
            except BaseException as e:  # noqa: BLE001
                errors.append(f"switcher {type(e).__name__}: {e}")
            i += 1

    _join(_threads([stepper, switcher]))
    assert gen.is_done() and len(PROMPT) < len(gen.get_sequence(0)) <= len(PROMPT) + 40
    gen.close()


def test_generator_set_active_adapters_during_generate_next_token(gmodel, gregistry):
    """The two calls must not overlap on one generator: the later one gets BusyError and changes nothing;
    the generator stays usable and consistent."""
    errors: List[str] = []
    busy = [0]
    for _ in range(10):
        _switch_round(gmodel, gregistry, errors, busy)
    assert not errors, errors[:5]
