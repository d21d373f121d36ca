"""Adapter-aware batching: `multilora prepare-batching` and RunOptions.set_active_adapters_per_row.

Every row of a mixed batch must equal that row run alone with its own active set, and the numpy reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import onnxruntime as ort
import pytest

import multilora as ml
from multilora import testing as T
from multilora.prepare_batching import prepare_batching

from support import assert_close, assert_error

TOL = 1e-5


@pytest.fixture(scope="module")
def batch_models(tmp_path_factory: pytest.TempPathFactory) -> Tuple[T.LoraModel, str]:
    d = tmp_path_factory.mktemp("batching")
    info = T.make_lora_model(
        d / "base.onnx", layers=2, hidden=16, modules=("q_proj", "v_proj", "o_proj", "up_proj"), seed=3
    )
    prepared = str(d / "prepared.onnx")
    prepare_batching(info.path, prepared)
    return info, prepared


@pytest.fixture(scope="module")
def adapter_params(batch_models: Tuple[T.LoraModel, str]) -> Dict[str, Dict[str, np.ndarray]]:
    info, _ = batch_models
    return {
        "sql": T.make_adapter_params(info, rank=4, seed=11),
        "chat": T.make_adapter_params(info, rank=2, seed=12, modules=("q_proj", "up_proj")),
        "tiny": T.make_adapter_params(info, rank=1, seed=13, layers=[1]),
        "big": T.make_adapter_params(info, rank=8, seed=14, modules=("v_proj", "o_proj")),
    }


@pytest.fixture
def prepared(batch_models: Tuple[T.LoraModel, str], adapter_params, tmp_path: Path):
    info, path = batch_models
    model = ml.Model(path)
    adapters = ml.Adapters(model)
    for name, params in adapter_params.items():
        f = tmp_path / f"{name}.onnx_adapter"
        T.write_ort_adapter(f, params)
        adapters.load(str(f), name)
    yield info, model, adapters
    adapters.close()
    model.close()


def _ids(info: T.LoraModel, batch: int, seq: int = 5, seed: int = 7) -> np.ndarray:
    return T.make_input_ids(info, batch=batch, seq=seq, seed=seed)


def _reference(info, params, ids: np.ndarray, rows, weights=None) -> np.ndarray:
    out = []
    for i, row in enumerate(rows):
        w = weights[i] if weights is not None else [1.0] * len(row)
        out.append(T.reference_forward(info, ids[i : i + 1], [(params[n], wi) for n, wi in zip(row, w)]))
    return np.concatenate(out)


def test_prepared_model_keeps_the_base_output(batch_models):
    info, path = batch_models
    ids = _ids(info, 3)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    base = ort.InferenceSession(info.path, so).run(["logits"], {"input_ids": ids})[0]
    out = ort.InferenceSession(path, so).run(["logits"], {"input_ids": ids})[0]
    np.testing.assert_array_equal(out, base)


def test_prepared_model_keeps_lora_inputs_and_version(batch_models):
    info, path = batch_models
    plain, prepared = ml.Model(info.path), ml.Model(path)
    assert [i.name for i in prepared.lora_inputs] == [i.name for i in plain.lora_inputs]
    assert prepared.version == plain.version
    assert [i.name for i in prepared.inputs] == ["input_ids"]


def test_prepare_twice_is_an_error(batch_models, tmp_path):
    _, path = batch_models
    with pytest.raises(ValueError, match="prepared already"):
        prepare_batching(path, tmp_path / "again.onnx")


def test_cli_prepare_batching(batch_models, tmp_path, capsys):
    from multilora.cli import main

    info, _ = batch_models
    out = tmp_path / "cli.onnx"
    assert main(["prepare-batching", info.path, str(out)]) == 0
    assert "LoRA pairs stacked" in capsys.readouterr().out
    assert ml.Model(str(out)).version == ml.Model(info.path).version


@pytest.mark.parametrize(
    "rows,weights",
    [
        ([["sql"], [], ["chat", "sql"], ["chat"]], None),
        ([["sql", "chat", "tiny"], ["big"], [], ["sql"], ["chat", "big"], []], None),
        ([["sql", "chat"], ["sql", "chat"], ["big", "tiny"], []], [[0.5, 2.0], [1.0, -1.0], [0.25, 3.0], []]),
        ([[], []], None),
        ([["tiny"]], [[0.0]]),
    ],
)
def test_rows_equal_rows_run_alone_and_reference(prepared, adapter_params, rows, weights):
    info, model, adapters = prepared
    ids = _ids(info, len(rows))
    opts = ml.RunOptions()
    opts.set_active_adapters_per_row(adapters, rows, weights)
    (out,) = model.run(["logits"], {"input_ids": ids}, opts)
    assert out.shape == (len(rows), 5, info.vocab)
    for i, row in enumerate(rows):
        alone = ml.RunOptions()
        alone.set_active_adapters(adapters, row, weights[i] if weights is not None else None)
        (one,) = model.run(["logits"], {"input_ids": ids[i : i + 1]}, alone)
        assert_close(out[i : i + 1], one, rtol=TOL, atol=TOL)
    assert_close(out, _reference(info, adapter_params, ids, rows, weights), rtol=TOL, atol=TOL)


def test_single_set_on_prepared_model_matches_plain_model(prepared, adapter_params, batch_models, tmp_path):
    info, model, adapters = prepared
    ids = _ids(info, 2)
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, ["sql", "chat"], [1.0, 0.5])
    (out,) = model.run(["logits"], {"input_ids": ids}, opts)
    ref = T.reference_forward(info, ids, [(adapter_params["sql"], 1.0), (adapter_params["chat"], 0.5)])
    assert_close(out, ref, rtol=TOL, atol=TOL)
    opts.clear_active_adapters()
    (base,) = model.run(["logits"], {"input_ids": ids}, opts)
    assert_close(base, T.reference_forward(info, ids), rtol=TOL, atol=TOL)


def test_per_row_and_single_set_replace_each_other(prepared, adapter_params):
    info, model, adapters = prepared
    ids = _ids(info, 2)
    opts = ml.RunOptions()
    opts.set_active_adapters_per_row(adapters, [["sql"], ["chat"]])
    assert opts.active_count == 2
    opts.set_active_adapters(adapters, ["big"])
    assert opts.active_count == 1
    (out,) = model.run(["logits"], {"input_ids": ids[:1]}, opts)  # batch 1: the per-row set is gone
    assert_close(out, T.reference_forward(info, ids[:1], [(adapter_params["big"], 1.0)]), rtol=TOL, atol=TOL)


def test_per_row_keeps_adapters_after_unload(prepared, adapter_params):
    info, model, adapters = prepared
    ids = _ids(info, 2)
    opts = ml.RunOptions()
    opts.set_active_adapters_per_row(adapters, [["sql"], []])
    adapters.unload("sql")
    (out,) = model.run(["logits"], {"input_ids": ids}, opts)
    assert_close(out, _reference(info, adapter_params, ids, [["sql"], []]), rtol=TOL, atol=TOL)


# ---- errors -----------------------------------------------------------------------------------------------


def test_unprepared_model_is_an_error(batch_models):
    info, _ = batch_models
    model = ml.Model(info.path)
    adapters = ml.Adapters(model)
    opts = ml.RunOptions()
    with pytest.raises(ml.InvalidArgumentError) as e:
        opts.set_active_adapters_per_row(adapters, [[], []])
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", info.path, "prepare-batching")


def test_batch_size_mismatch(prepared):
    info, model, adapters = prepared
    opts = ml.RunOptions()
    opts.set_active_adapters_per_row(adapters, [["sql"], [], ["chat"]])
    with pytest.raises(ml.ShapeMismatchError) as e:
        model.run(["logits"], {"input_ids": _ids(info, 2)}, opts)
    assert_error(e, ml.ShapeMismatchError, "MLORA_STATUS_SHAPE_MISMATCH", "batch size 2", "batch size 3")


def test_unknown_adapter(prepared):
    _, _, adapters = prepared
    opts = ml.RunOptions()
    with pytest.raises(ml.AdapterNotFoundError) as e:
        opts.set_active_adapters_per_row(adapters, [["sql"], ["nope"]])
    assert_error(e, ml.AdapterNotFoundError, "MLORA_STATUS_NOT_FOUND", "'nope'", "row 1")
    assert opts.active_count == 0  # unchanged


def test_duplicate_name_within_a_row(prepared):
    _, _, adapters = prepared
    opts = ml.RunOptions()
    opts.set_active_adapters_per_row(adapters, [["sql"], ["sql"]])  # across rows: fine
    with pytest.raises(ml.InvalidArgumentError) as e:
        opts.set_active_adapters_per_row(adapters, [["sql", "chat", "sql"]])
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "'sql'", "twice", "row 0")
    assert opts.active_count == 1  # unchanged


def test_bad_shapes_of_arguments(prepared):
    _, _, adapters = prepared
    opts = ml.RunOptions()
    with pytest.raises(ml.InvalidArgumentError):
        opts.set_active_adapters_per_row(adapters, [])
    with pytest.raises(ml.InvalidArgumentError):
        opts.set_active_adapters_per_row(adapters, [["sql"], []], [[1.0]])
    with pytest.raises(ml.InvalidArgumentError):
        opts.set_active_adapters_per_row(adapters, [["sql"]], [[1.0, 2.0]])
    with pytest.raises(ml.InvalidArgumentError):
        opts.set_active_adapters_per_row(adapters, [["sql"]], [[float("nan")]])


def test_genai_builder_model(tmp_path):
    """A model from onnxruntime-genai's builder (shared "lora_r", SimplifiedLayerNormalization, KV inputs)."""
    import json
    import shutil

    src = Path(__file__).parent / "fixtures" / "generation" / "lora"
    d = tmp_path / "lora"
    shutil.copytree(src, d)
    (d / "model.onnx").rename(d / "plain.onnx")
    prepare_batching(d / "plain.onnx", d / "model.onnx")
    head = int(json.loads((d / "genai_config.json").read_text())["model"]["decoder"]["head_size"])
    plain, prepared = ml.Model(str(src)), ml.Model(str(d))
    assert prepared.version == plain.version
    regs = [ml.Adapters(plain), ml.Adapters(prepared)]
    for reg in regs:
        for name in ("a", "b"):
            reg.load(str(src / "adapters" / f"{name}.onnx_adapter"), name)

    def feeds(model: ml.Model, ids: np.ndarray) -> Dict[str, np.ndarray]:
        f = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        for i in model.inputs:
            if i.name.startswith("past_key_values"):
                f[i.name] = np.zeros((ids.shape[0], 1, 0, head), np.float32)
        return f

    ids = np.random.default_rng(0).integers(0, 50, size=(4, 5), dtype=np.int64)
    rows, weights = [["a"], [], ["a", "b"], ["b"]], [[1.0], [], [0.5, 2.0], [-1.0]]
    opts = ml.RunOptions()
    opts.set_active_adapters_per_row(regs[1], rows, weights)
    (out,) = prepared.run(["logits"], feeds(prepared, ids), opts)
    for i, row in enumerate(rows):
        alone = ml.RunOptions()
        alone.set_active_adapters(regs[0], row, weights[i])
        (one,) = plain.run(["logits"], feeds(plain, ids[i : i + 1]), alone)
        assert_close(out[i : i + 1], one, rtol=TOL, atol=TOL)
