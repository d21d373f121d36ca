"""The adapter registry: load, load_from_memory, unload, replace, info, holders, threads."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

import multilora as ml
from multilora import testing as T

from support import assert_close, assert_error


def test_load_names_info(adapters, sql_ours, chat_ours, params_sql):
    adapters.load(sql_ours, "sql")
    adapters.load(chat_ours, "chat")
    assert adapters.names() == ["chat", "sql"]
    assert "sql" in adapters and "nope" not in adapters and 3 not in adapters
    assert len(adapters) == 2 and list(adapters) == ["chat", "sql"]
    with adapters.get("sql") as info:
        assert info.name == "sql"
        assert info.rank == 4
        assert (info.format_version, info.adapter_version, info.model_version) == (1, 3, 0)
        assert set(info.parameter_names) == set(params_sql)
        assert info.bytes_mapped == os.path.getsize(sql_ours)
        assert info.bytes_copied == 0
        assert info.params[next(iter(params_sql))].shape == (16, 4)
        for name, value in info.parameters.items():
            np.testing.assert_array_equal(value, params_sql[name])
    with adapters.get("chat") as info:
        assert info.rank == 8


def test_load_accepts_pathlike(adapters, sql_ours):
    from pathlib import Path

    adapters.load(Path(sql_ours), "sql")
    assert adapters.names() == ["sql"]


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "numpy"])
def test_load_from_memory(model, adapters, lora_model, sql_ort, params_sql, ids, kind):
    raw = Path(sql_ort).read_bytes()
    data = {
        "bytes": raw,
        "bytearray": bytearray(raw),
        "memoryview": memoryview(raw),
        "numpy": np.frombuffer(raw, dtype=np.uint8),
    }[kind]
    adapters.load_from_memory(data, "mem")
    with adapters.get("mem") as info:
        assert info.bytes_mapped == 0
        assert info.bytes_copied > 0
        assert info.adapter_version == 3
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, ["mem"])
    (out,) = model.run(["logits"], {"input_ids": ids}, opts)
    assert_close(out, T.reference_forward(lora_model, ids, [(params_sql, 1.0)]))


def test_load_from_memory_rejects_a_path(adapters, sql_ours):
    with pytest.raises(TypeError, match="not a path"):
        adapters.load_from_memory(sql_ours, "x")  # type: ignore[arg-type]


def test_unload_removes_the_name(adapters, sql_ours):
    adapters.load(sql_ours, "sql")
    adapters.unload("sql")
    assert adapters.names() == []
    with pytest.raises(ml.AdapterNotFoundError) as e:
        adapters.unload("sql")
    assert_error(e, ml.AdapterNotFoundError, "MLORA_STATUS_NOT_FOUND", "'sql'")
    assert isinstance(e.value, KeyError)
    adapters.load(sql_ours, "sql")  # the name is free again
    assert adapters.names() == ["sql"]


def test_unload_never_breaks_a_holder(model, adapters, lora_model, sql_ours, params_sql, ids):
    adapters.load(sql_ours, "sql")
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, ["sql"])
    (before,) = model.run(["logits"], {"input_ids": ids}, opts)
    info = adapters.get("sql")
    adapters.unload("sql")
    assert "sql" not in adapters
    (after,) = model.run(["logits"], {"input_ids": ids}, opts)
    np.testing.assert_array_equal(after, before)
    assert_close(after, T.reference_forward(lora_model, ids, [(params_sql, 1.0)]))
    assert info.rank == 4  # the info handle keeps its version too
    info.close()
    # a new set_active_adapters resolves names now: the unloaded one is gone
    with pytest.raises(ml.AdapterNotFoundError) as e:
        opts.set_active_adapters(adapters, ["sql"])
    assert_error(e, ml.AdapterNotFoundError, "MLORA_STATUS_NOT_FOUND", "'sql'")
    # and a failed set leaves the options unchanged
    (still,) = model.run(["logits"], {"input_ids": ids}, opts)
    np.testing.assert_array_equal(still, before)


def test_unload_while_a_composite_holds_it(
    model, adapters, lora_model, sql_ours, chat_ours, params_sql, params_chat, ids
):
    adapters.load(sql_ours, "sql")
    adapters.load(chat_ours, "chat")
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, ["sql", "chat"], [1.0, 0.5])
    adapters.unload("sql")
    adapters.unload("chat")
    adapters.close()
    (out,) = model.run(["logits"], {"input_ids": ids}, opts)
    assert_close(out, T.reference_forward(lora_model, ids, [(params_sql, 1.0), (params_chat, 0.5)]))


def test_replace_needs_replace_true_and_holders_keep_their_version(
    model, adapters, lora_model, sql_ours, chat_ours, params_sql, params_chat, ids
):
    adapters.load(sql_ours, "a")
    old = ml.RunOptions()
    old.set_active_adapters(adapters, ["a"])
    with pytest.raises(ml.AlreadyExistsError) as e:
        adapters.load(chat_ours, "a")
    assert_error(e, ml.AlreadyExistsError, "MLORA_STATUS_ALREADY_EXISTS", "'a'")
    with adapters.get("a") as info:
        assert info.rank == 4  # unchanged after the failed load
    adapters.load(chat_ours, "a", replace=True)
    with adapters.get("a") as info:
        assert info.rank == 8
    new = ml.RunOptions()
    new.set_active_adapters(adapters, ["a"])
    assert_close(model.run(None, {"input_ids": ids}, old)[0], T.reference_forward(lora_model, ids, [(params_sql, 1.0)]))
    assert_close(
        model.run(None, {"input_ids": ids}, new)[0], T.reference_forward(lora_model, ids, [(params_chat, 1.0)])
    )


def test_replace_works_for_a_new_name_too(adapters, sql_ours):
    adapters.load(sql_ours, "fresh", replace=True)
    assert adapters.names() == ["fresh"]


def test_model_version_is_checked(adapters, params_sql, tmp_path):
    path = str(tmp_path / "mv.onnx_adapter")
    ml.write_adapter(path, params_sql, model_version=1234567890)
    with pytest.raises(ml.VersionMismatchError) as e:
        adapters.load(path, "mv")
    assert_error(e, ml.VersionMismatchError, "MLORA_STATUS_VERSION_MISMATCH", "mv.onnx_adapter", "1234567890")
    assert "mv" not in adapters
    adapters.load(path, "mv", ignore_model_version=True)
    with adapters.get("mv") as info:
        assert info.model_version == 1234567890


def test_model_version_fingerprint(model, adapters, lora_model, wide_model, params_sql, tmp_path):
    # the fingerprint is stable, non-zero, and differs between models with different LoRA inputs
    assert model.version != 0
    with ml.Model(lora_model.path) as again, ml.Model(wide_model.path) as other:
        assert again.version == model.version
        assert other.version != model.version
    # an adapter that records this model's version loads without the override
    path = str(tmp_path / "fp.onnx_adapter")
    ml.write_adapter(path, params_sql, model_version=model.version)
    adapters.load(path, "fp")
    assert "fp" in adapters


def test_handles_released_in_any_order(lora_model, sql_ours, chat_ours, ids, params_sql):
    model = ml.Model(lora_model.path)
    adapters = ml.Adapters(model)
    opts = ml.RunOptions()
    adapters.load(sql_ours, "sql")
    opts.set_active_adapters(adapters, ["sql"])
    (expected,) = model.run(None, {"input_ids": ids}, opts)
    assert_close(expected, T.reference_forward(lora_model, ids, [(params_sql, 1.0)]))
    # the registry goes first: the run options keep their adapters
    adapters.unload("sql")
    adapters.close()
    (out,) = model.run(None, {"input_ids": ids}, opts)
    np.testing.assert_array_equal(out, expected)
    # the model handle goes first: a registry keeps its model and still validates loads against it
    registry = ml.Adapters(model)
    model.close()
    registry.load(chat_ours, "chat")
    with registry.get("chat") as info:
        assert info.rank == 8
    registry.close()
    opts.close()


def test_adapters_of_another_model_do_not_validate(tmp_path, sql_ours):
    other = T.make_lora_model(tmp_path / "other.onnx", hidden=8, seed=1)
    with ml.Model(other.path) as model, ml.Adapters(model) as adapters:
        with pytest.raises(ml.ShapeMismatchError) as e:
            adapters.load(sql_ours, "sql")
        assert_error(
            e, ml.ShapeMismatchError, "MLORA_STATUS_SHAPE_MISMATCH", "sql_ours.onnx_adapter", "[16, 4]", "[8, "
        )


def test_concurrent_runs_loads_and_unloads(
    model, adapters, lora_model, sql_ours, chat_ours, params_sql, params_chat, ids
):
    adapters.load(sql_ours, "sql")
    adapters.load(chat_ours, "chat")
    expected = {
        "sql": T.reference_forward(lora_model, ids, [(params_sql, 1.0)]),
        "chat": T.reference_forward(lora_model, ids, [(params_chat, 1.0)]),
    }
    errors = []
    stop = threading.Event()

    def runner(name: str) -> None:
        try:
            opts = ml.RunOptions()
            opts.set_active_adapters(adapters, [name])
            for _ in range(30):
                (out,) = model.run(["logits"], {"input_ids": ids}, opts)
                assert_close(out, expected[name])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def churner() -> None:
        try:
            i = 0
            while not stop.is_set() and i < 200:
                adapters.load(sql_ours, f"tmp{i % 3}", replace=True)
                adapters.unload(f"tmp{i % 3}")
                i += 1
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(n,)) for n in ("sql", "chat", "sql", "chat")]
    churn = threading.Thread(target=churner)
    churn.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    churn.join()
    assert not errors, errors
    assert adapters.names() == ["chat", "sql"]


@pytest.mark.parametrize("order", ["as written", "reversed", "interleaved"])
def test_a_half_without_its_partner_or_of_another_rank_is_refused(adapters, lora_model, params_sql, tmp_path, order):
    """Each lora_A needs its lora_B (and the other way round) at the same rank, wherever the two sit in the
    file (the check looks beside each parameter first, then the whole file)."""
    names = list(params_sql)
    if order == "reversed":
        names.reverse()
    elif order == "interleaved":  # every A far from its B
        names = names[0::2] + names[1::2]
    a_name = next(n for n in names if "lora_A" in n)
    b_name = a_name.replace("lora_A", "lora_B")

    lonely = {n: params_sql[n] for n in names if n != b_name}
    ml.write_adapter(tmp_path / "lonely.onnx_adapter", lonely)
    with pytest.raises(ml.MultiloraError) as e:
        adapters.load(tmp_path / "lonely.onnx_adapter", "lonely")
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", f"'{a_name}' has no partner '{b_name}'")

    uneven = {n: params_sql[n] for n in names}
    uneven[b_name] = np.concatenate([params_sql[b_name], params_sql[b_name][:1]], axis=0)  # rank 4 + 1
    ml.write_adapter(tmp_path / "uneven.onnx_adapter", uneven)
    with pytest.raises(ml.MultiloraError) as e:
        adapters.load(tmp_path / "uneven.onnx_adapter", "uneven")
    assert_error(e, ml.ShapeMismatchError, "MLORA_STATUS_SHAPE_MISMATCH", "has rank 4", "has rank 5")

    whole = {n: params_sql[n] for n in names}  # the same parameters complete, in this order: loads
    ml.write_adapter(tmp_path / "whole.onnx_adapter", whole)
    adapters.load(tmp_path / "whole.onnx_adapter", "whole")
    assert adapters.names() == ["whole"]
