"""Lifetimes: close() idempotent, use after close raises ValueError naming the object, context
managers, reprs, release in any order."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import multilora as ml
from multilora import testing as T

from support import assert_close


def test_model_close(lora_model, ids):
    model = ml.Model(lora_model.path)
    assert repr(model) == f"<Model {lora_model.path!r} inputs=['input_ids'] lora_inputs=8 open>"
    model.close()
    model.close()  # idempotent
    assert model.closed
    assert repr(model) == f"<Model {lora_model.path!r} closed>"
    with pytest.raises(ValueError, match=r"Model\(.*model\.onnx'\) is closed") as e:
        model.run(None, {"input_ids": ids})
    # the same status every other binding reports for a released handle
    assert isinstance(e.value, ml.InvalidHandleError)
    assert e.value.status_name == "MLORA_STATUS_INVALID_HANDLE"
    with pytest.raises(ValueError, match="is closed"):
        model.lora_inputs  # noqa: B018
    with pytest.raises(ValueError, match=r"Model\(.*\) is closed"):
        ml.Adapters(model)


def test_adapters_close_and_repr(model, sql_ours, lora_model):
    adapters = ml.Adapters(model)
    assert repr(adapters) == f"<Adapters model={lora_model.path!r} names=[] open>"
    adapters.load(sql_ours, "sql")
    assert repr(adapters) == f"<Adapters model={lora_model.path!r} names=['sql'] open>"
    adapters.close()
    adapters.close()
    assert repr(adapters) == f"<Adapters model={lora_model.path!r} closed>"
    for call in (
        lambda: adapters.load(sql_ours, "x"),
        lambda: adapters.load_from_memory(b"", "x"),
        lambda: adapters.unload("sql"),
        lambda: adapters.names(),
        lambda: adapters.get("sql"),
        lambda: len(adapters),
        lambda: ml.RunOptions().set_active_adapters(adapters, ["sql"]),
    ):
        with pytest.raises(ValueError, match=r"Adapters\(model=.*\) is closed"):
            call()


def test_adapter_close_and_repr(adapters, sql_ours):
    adapters.load(sql_ours, "sql")
    info = adapters.get("sql")
    assert repr(info) == "<Adapter 'sql' rank=4 params=8 open>"
    info.close()
    info.close()
    assert repr(info) == "<Adapter 'sql' closed>"
    with pytest.raises(ValueError, match=r"Adapter\('sql'\) is closed"):
        info.rank  # noqa: B018


def test_run_options_close_and_repr(adapters, sql_ours, chat_ours):
    adapters.load(sql_ours, "sql")
    adapters.load(chat_ours, "chat")
    opts = ml.RunOptions()
    assert repr(opts) == "<RunOptions active=[] open>"
    opts.set_active_adapters(adapters, ["sql"])
    assert repr(opts) == "<RunOptions active=['sql'] open>"
    opts.set_active_adapters(adapters, ["sql", "chat"], [1.0, 0.5])
    assert repr(opts) == "<RunOptions active=['sql', 'chat'] weights=[1.0, 0.5] open>"
    assert opts.active_adapters == [("sql", 1.0), ("chat", 0.5)]
    opts.clear_active_adapters()
    assert opts.active_count == 0 and opts.active_adapters == []
    opts.close()
    opts.close()
    assert repr(opts) == "<RunOptions active=[] closed>"
    with pytest.raises(ValueError, match="RunOptions is closed"):
        opts.set_active_adapters(adapters, ["sql"])


def test_closed_run_options_cannot_be_used_in_run(model, ids):
    opts = ml.RunOptions()
    opts.close()
    with pytest.raises(ValueError, match="RunOptions is closed"):
        model.run(None, {"input_ids": ids}, opts)


def test_context_managers(lora_model, sql_ours, ids, params_sql):
    with ml.Model(lora_model.path) as model, ml.Adapters(model) as adapters, ml.RunOptions() as opts:
        adapters.load(sql_ours, "sql")
        opts.set_active_adapters(adapters, ["sql"])
        (out,) = model.run(None, {"input_ids": ids}, opts)
        assert_close(out, T.reference_forward(lora_model, ids, [(params_sql, 1.0)]))
    assert model.closed and adapters.closed and opts.closed
    with pytest.raises(ValueError, match="is closed"):
        with model:
            pass


def test_garbage_collection_in_any_order(lora_model, sql_ours, ids, params_sql):
    model = ml.Model(lora_model.path)
    adapters = ml.Adapters(model)
    adapters.load(sql_ours, "sql")
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, ["sql"])
    run = model.run
    del adapters, model
    gc.collect()
    (out,) = run(None, {"input_ids": ids}, opts)
    assert_close(out, T.reference_forward(lora_model, ids, [(params_sql, 1.0)]))
    del run, opts
    gc.collect()


def test_arrays_outlive_every_handle(lora_model, sql_ours, ids):
    with ml.Model(lora_model.path) as model:
        (out,) = model.run(None, {"input_ids": ids})
    with ml.Adapter.open(sql_ours) as adapter:
        params = adapter.parameters
    gc.collect()
    assert np.isfinite(out).all()
    assert all(np.isfinite(v).all() for v in params.values())
