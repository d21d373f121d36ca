"""Concurrency stress: runs with different active sets on 8 threads while other threads load, replace and
unload adapters. Every result must equal its single-threaded reference (computed before the threads
start, itself checked against numpy's reference_forward), nothing may crash, and the whole test is
bounded in time (a few seconds of stress). The Python package releases the GIL around run and load, so
the native calls really overlap."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pytest

import multilora as ml
from multilora import testing as T

from support import assert_close

RUNNERS = 8
STRESS_SECONDS = 3.0
# Active sets the runners use: (names, weights). "" = base model.
SETS: List[Tuple[Tuple[str, ...], Tuple[float, ...]]] = [
    ((), ()),
    (("r4",), (1.0,)),
    (("r8",), (1.0,)),
    (("q",), (1.0,)),
    (("r4", "r8"), (1.0, 0.5)),
    (("q", "v"), (1.0, 1.0)),
    (("r4", "q", "v"), (0.25, 2.0, -1.0)),
    (("r8",), (3.0,)),
]


@pytest.fixture(scope="module")
def stress_params(lora_model: T.LoraModel) -> Dict[str, Dict[str, np.ndarray]]:
    return {
        "r4": T.make_adapter_params(lora_model, rank=4, seed=11),
        "r8": T.make_adapter_params(lora_model, rank=8, seed=12),
        "q": T.make_adapter_params(lora_model, rank=2, seed=13, modules=["q_proj"]),
        "v": T.make_adapter_params(lora_model, rank=3, seed=14, modules=["v_proj"]),
        # the two versions a mutator thread swaps under one name
        "vol0": T.make_adapter_params(lora_model, rank=1, seed=15),
        "vol1": T.make_adapter_params(lora_model, rank=5, seed=16),
    }


@pytest.fixture(scope="module")
def stress_files(tmp_path_factory: pytest.TempPathFactory, stress_params) -> Dict[str, str]:
    d = tmp_path_factory.mktemp("stress")
    out = {}
    for name, params in stress_params.items():
        out[name] = str(d / f"{name}.onnx_adapter")
        ml.write_adapter(out[name], params)
    return out


def _run(model: ml.Model, ids: np.ndarray, opts: ml.RunOptions) -> np.ndarray:
    (logits,) = model.run(["logits"], {"input_ids": ids}, opts)
    return logits


def _expected(lora_model, ids, params, names: Sequence[str], weights: Sequence[float]) -> np.ndarray:
    return T.reference_forward(lora_model, ids, [(params[n], w) for n, w in zip(names, weights)])


def test_runs_loads_replaces_and_unloads_concurrently(lora_model, ids, stress_params, stress_files):
    model = ml.Model(lora_model.path, intra_op_threads=1)
    adapters = ml.Adapters(model)
    for name in ("r4", "r8", "q", "v"):
        adapters.load(stress_files[name], name)

    # Single-threaded references: every set once, checked against numpy.
    refs: List[np.ndarray] = []
    for names, weights in SETS:
        opts = ml.RunOptions()
        opts.set_active_adapters(adapters, list(names), list(weights) or None)
        got = _run(model, ids, opts)
        assert_close(got, _expected(lora_model, ids, stress_params, names, weights), rtol=1e-4, atol=1e-4)
        refs.append(got)
    vol_refs = []
    for key in ("vol0", "vol1"):
        adapters.load(stress_files[key], "vol", replace=True)
        opts = ml.RunOptions()
        opts.set_active_adapters(adapters, ["vol"])
        vol_refs.append(_run(model, ids, opts))
    adapters.unload("vol")
    held_opts = ml.RunOptions()
    held_opts.set_active_adapters(adapters, ["r4", "q"])
    held_ref = _run(model, ids, held_opts)
    assert_close(held_ref, _expected(lora_model, ids, stress_params, ["r4", "q"], [1.0, 1.0]), rtol=1e-4, atol=1e-4)
    vol_bytes = {k: Path(stress_files[k]).read_bytes() for k in ("vol0", "vol1")}
    stable_bytes = {k: Path(stress_files[k]).read_bytes() for k in ("r4", "r8", "q", "v")}

    stop = threading.Event()
    errors: List[str] = []
    counts = {"runs": 0, "vol_runs": 0, "loads": 0, "replaces": 0, "unloads": 0, "not_found": 0}
    lock = threading.Lock()

    def record(what: str, n: int = 1) -> None:
        with lock:
            counts[what] += n

    def runner(k: int) -> None:
        try:
            i = k
            opts = ml.RunOptions()  # one per thread: options must not change while a run uses them
            held = ml.RunOptions()  # set once, kept across unloads and replaces of its adapters
            held.set_active_adapters(adapters, ["r4", "q"])
            while not stop.is_set():
                names, weights = SETS[i % len(SETS)]
                opts.set_active_adapters(adapters, list(names), list(weights) or None)
                assert_close(_run(model, ids, opts), refs[i % len(SETS)], rtol=1e-5, atol=1e-6)
                assert_close(_run(model, ids, held), held_ref, rtol=1e-5, atol=1e-6)
                record("runs", 2)
                # The adapter a mutator keeps swapping: either version, never a mix, never a crash.
                try:
                    opts.set_active_adapters(adapters, ["vol"])
                except ml.AdapterNotFoundError:
                    record("not_found")
                else:
                    got = _run(model, ids, opts)
                    if not any(np.allclose(got, r, rtol=1e-5, atol=1e-5) for r in vol_refs):
                        errors.append(f"runner {k}: 'vol' result matches neither version")
                    record("vol_runs")
                i += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(f"runner {k}: {type(e).__name__}: {e}")
            stop.set()

    def mutator(k: int) -> None:
        try:
            n = 0
            while not stop.is_set():
                key = f"vol{n % 2}"
                # swap the volatile adapter, from a file or from memory
                if n % 3 == 0:
                    adapters.load(stress_files[key], "vol", replace=True)
                else:
                    adapters.load_from_memory(vol_bytes[key], "vol", replace=True)
                record("replaces")
                if n % 4 == 3:
                    try:
                        adapters.unload("vol")
                        record("unloads")
                    except ml.AdapterNotFoundError:
                        pass  # the other mutator got there first
                # replace a stable adapter with an identical copy: runners must not notice
                stable = ("r4", "r8", "q", "v")[n % 4]
                adapters.load_from_memory(stable_bytes[stable], stable, replace=True)
                record("replaces")
                # a private name: load, inspect, unload
                mine = f"tmp{k}"
                adapters.load(stress_files["vol1"], mine)
                with adapters.get(mine) as a:
                    assert a.rank == 5
                adapters.unload(mine)
                record("loads")
                record("unloads")
                n += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(f"mutator {k}: {type(e).__name__}: {e}")
            stop.set()

    threads = [threading.Thread(target=runner, args=(k,), daemon=True) for k in range(RUNNERS)]
    threads += [threading.Thread(target=mutator, args=(k,), daemon=True) for k in range(2)]
    start = time.monotonic()
    for t in threads:
        t.start()
    stop.wait(STRESS_SECONDS)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    elapsed = time.monotonic() - start
    assert not [t for t in threads if t.is_alive()], "a thread did not finish (deadlock?)"
    assert not errors, "\n".join(errors[:10])
    assert elapsed < 30
    assert counts["runs"] >= RUNNERS and counts["replaces"] > 0 and counts["vol_runs"] > 0, counts
    assert set(adapters.names()) - {"vol"} == {"q", "r4", "r8", "v"}
    # After the storm the registry still works and gives the references.
    for (names, weights), ref in zip(SETS, refs):
        opts = ml.RunOptions()
        opts.set_active_adapters(adapters, list(names), list(weights) or None)
        assert_close(_run(model, ids, opts), ref, rtol=1e-6, atol=1e-6)
    adapters.close()
    model.close()


def test_unload_and_close_while_runs_hold_the_adapters(lora_model, ids, stress_params, stress_files):
    """Runs keep going with the adapter versions they hold while another thread unloads everything and
    closes the registry and the model handles: handles may be released in any order."""
    model = ml.Model(lora_model.path, intra_op_threads=1)
    adapters = ml.Adapters(model)
    adapters.load(stress_files["r8"], "r8")
    adapters.load(stress_files["v"], "v")
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, ["r8", "v"], [0.5, 2.0])
    ref = _expected(lora_model, ids, stress_params, ["r8", "v"], [0.5, 2.0])
    ready = threading.Barrier(5)
    errors: List[str] = []

    def runner() -> None:
        try:
            ready.wait()
            for _ in range(40):
                assert_close(_run(model, ids, opts), ref, rtol=1e-4, atol=1e-4)
        except BaseException as e:  # noqa: BLE001
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=runner, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    ready.wait()
    adapters.unload("r8")
    adapters.unload("v")
    adapters.close()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:5]
    assert_close(_run(model, ids, opts), ref, rtol=1e-4, atol=1e-4)
    model.close()
