"""Model.run numbers, checked against onnxruntime's own LoRA path and the numpy reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import multilora as ml
from multilora import testing as T

from support import ATOL, RTOL, OrtBaseline, assert_close, assert_error


def test_base_model_matches_onnxruntime_and_reference(model, lora_model, baseline, ids):
    (out,) = model.run(["logits"], {"input_ids": ids})
    assert out.dtype == np.float32 and out.shape == (2, 5, lora_model.vocab)
    assert_close(out, baseline.run(ids))
    assert_close(out, T.reference_forward(lora_model, ids))


def test_empty_active_set_is_the_base_model(model, adapters, lora_model, sql_ours, baseline, ids):
    adapters.load(sql_ours, "sql")
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, [])
    assert opts.active_count == 0
    (out,) = model.run(["logits"], {"input_ids": ids}, opts)
    assert_close(out, baseline.run(ids))


@pytest.mark.parametrize("writer", ["sql_ort", "sql_ours"])
def test_single_adapter_matches_onnxruntime_lora(
    request, model, adapters, lora_model, baseline, ids, params_sql, writer
):
    path = request.getfixturevalue(writer)
    adapters.load(path, "sql")
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, ["sql"])
    (out,) = model.run(["logits"], {"input_ids": ids}, opts)
    expected = baseline.run(ids, path)
    assert_close(out, expected)
    assert_close(out, T.reference_forward(lora_model, ids, [(params_sql, 1.0)]))
    # the adapter really changes the output
    assert not np.allclose(out, baseline.run(ids), rtol=RTOL, atol=ATOL)


def test_weight_scales_the_delta(model, adapters, lora_model, sql_ours, params_sql, ids, tmp_path, baseline):
    adapters.load(sql_ours, "sql")
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, ["sql"], [0.5])
    (out,) = model.run(["logits"], {"input_ids": ids}, opts)
    assert_close(out, T.reference_forward(lora_model, ids, [(params_sql, 0.5)]))
    # onnxruntime with B pre-scaled by 0.5 gives the same
    scaled = T.composite_params([(params_sql, 0.5)])
    T.write_ort_adapter(tmp_path / "half.onnx_adapter", scaled)
    assert_close(out, baseline.run(ids, str(tmp_path / "half.onnx_adapter")))


def test_weight_zero_is_the_base_model(model, adapters, sql_ours, baseline, ids):
    adapters.load(sql_ours, "sql")
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, ["sql"], [0.0])
    (out,) = model.run(["logits"], {"input_ids": ids}, opts)
    assert_close(out, baseline.run(ids))


def test_overlapping_adapters_sum_their_deltas(
    model, adapters, lora_model, sql_ours, chat_ours, params_sql, params_chat, ids, tmp_path, baseline
):
    adapters.load(sql_ours, "sql")
    adapters.load(chat_ours, "chat")
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, ["sql", "chat"], [1.0, 0.5])
    assert opts.active_count == 2
    (out,) = model.run(["logits"], {"input_ids": ids}, opts)
    assert_close(out, T.reference_forward(lora_model, ids, [(params_sql, 1.0), (params_chat, 0.5)]))
    # onnxruntime running the rank-concatenated composite (A=[A1 A2], B=[B1; 0.5 B2]) agrees
    T.write_ort_adapter(
        tmp_path / "composite.onnx_adapter", T.composite_params([(params_sql, 1.0), (params_chat, 0.5)])
    )
    assert_close(out, baseline.run(ids, str(tmp_path / "composite.onnx_adapter")))
    # the order of the names does not matter
    opts.set_active_adapters(adapters, ["chat", "sql"], [0.5, 1.0])
    (again,) = model.run(["logits"], {"input_ids": ids}, opts)
    assert_close(again, out)


def test_overlapping_adapters_with_different_ranks_per_parameter(
    model, adapters, lora_model, sql_ours, q_ours, params_sql, params_q, ids
):
    # q_proj gets rank 4 + 4, v_proj keeps rank 4: composite ranks differ between parameters
    adapters.load(sql_ours, "sql")
    adapters.load(q_ours, "q")
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, ["sql", "q"], [0.25, 2.0])
    (out,) = model.run(["logits"], {"input_ids": ids}, opts)
    assert_close(out, T.reference_forward(lora_model, ids, [(params_sql, 0.25), (params_q, 2.0)]))


def test_disjoint_adapters_are_united(
    model, adapters, lora_model, q_ours, v_ort, params_q, params_v, ids, tmp_path, baseline
):
    adapters.load(q_ours, "q")
    adapters.load(v_ort, "v")
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, ["q", "v"], [1.0, 0.75])
    (out,) = model.run(["logits"], {"input_ids": ids}, opts)
    assert_close(out, T.reference_forward(lora_model, ids, [(params_q, 1.0), (params_v, 0.75)]))
    united = T.composite_params([(params_q, 1.0), (params_v, 0.75)])
    T.write_ort_adapter(tmp_path / "united.onnx_adapter", united)
    assert_close(out, baseline.run(ids, str(tmp_path / "united.onnx_adapter")))


def test_partial_adapter_leaves_other_projections_at_base(model, adapters, lora_model, q_ours, params_q, ids, baseline):
    adapters.load(q_ours, "q")
    opts = ml.RunOptions()
    opts.set_active_adapter(adapters, "q")
    (out,) = model.run(["logits"], {"input_ids": ids}, opts)
    assert_close(out, T.reference_forward(lora_model, ids, [(params_q, 1.0)]))
    assert_close(out, baseline.run(ids, q_ours))


# With one rank dim name shared by every LoRA input ("lora_r", as model builders write), ONNX Runtime's
# allocation planner reuses buffers across LoRA inputs and fails ("Shape mismatch attempting to re-use
# buffer") when they get different ranks — onnxruntime's own LoRA path fails so. The core feeds every input
# of such a group at the group's largest rank, zero-padded (exact); these tests pin that down.


def test_partial_adapter_on_a_model_with_one_shared_rank_dim(shared_dim_model, tmp_path):
    # the adapter touches q_proj and v_proj; k_proj and o_proj keep their rank-0 defaults
    p = T.make_adapter_params(shared_dim_model, rank=4, seed=12, modules=("q_proj", "v_proj"))
    ml.write_adapter(tmp_path / "qv.onnx_adapter", p)
    x = T.make_input_ids(shared_dim_model, batch=1, seq=6, seed=3)
    with ml.Model(shared_dim_model.path) as model, ml.Adapters(model) as adapters, ml.RunOptions() as opts:
        adapters.load(tmp_path / "qv.onnx_adapter", "qv")
        opts.set_active_adapters(adapters, ["qv"])
        (out,) = model.run(["logits"], {"input_ids": x}, opts)
        assert_close(out, T.reference_forward(shared_dim_model, x, [(p, 1.0)]))


def test_overlapping_adapters_on_a_model_with_one_shared_rank_dim(shared_dim_model, tmp_path):
    # q/v_proj get rank 8 + 4, k/o_proj rank 8
    p1 = T.make_adapter_params(shared_dim_model, rank=8, seed=11)
    p2 = T.make_adapter_params(shared_dim_model, rank=4, seed=12, modules=("q_proj", "v_proj"))
    ml.write_adapter(tmp_path / "p1.onnx_adapter", p1)
    ml.write_adapter(tmp_path / "p2.onnx_adapter", p2)
    x = T.make_input_ids(shared_dim_model, batch=1, seq=6, seed=3)
    with ml.Model(shared_dim_model.path) as model, ml.Adapters(model) as adapters, ml.RunOptions() as opts:
        adapters.load(tmp_path / "p1.onnx_adapter", "p1")
        adapters.load(tmp_path / "p2.onnx_adapter", "p2")
        opts.set_active_adapters(adapters, ["p1", "p2"], [1.0, 0.5])
        (out,) = model.run(["logits"], {"input_ids": x}, opts)
        assert_close(out, T.reference_forward(shared_dim_model, x, [(p1, 1.0), (p2, 0.5)]))


def test_full_adapter_on_a_model_with_one_shared_rank_dim(shared_dim_model, tmp_path):
    p = T.make_adapter_params(shared_dim_model, rank=8, seed=11)
    ml.write_adapter(tmp_path / "all.onnx_adapter", p)
    x = T.make_input_ids(shared_dim_model, batch=1, seq=6, seed=3)
    with ml.Model(shared_dim_model.path) as model, ml.Adapters(model) as adapters, ml.RunOptions() as opts:
        adapters.load(tmp_path / "all.onnx_adapter", "all")
        opts.set_active_adapters(adapters, ["all"], [0.5])
        (out,) = model.run(["logits"], {"input_ids": x}, opts)
        assert_close(out, T.reference_forward(shared_dim_model, x, [(p, 0.5)]))


def test_switching_active_sets_between_runs(
    model, adapters, lora_model, sql_ours, chat_ours, params_sql, params_chat, ids
):
    adapters.load(sql_ours, "sql")
    adapters.load(chat_ours, "chat")
    opts = ml.RunOptions()
    for names, weights, params in [
        (["sql"], [1.0], [(params_sql, 1.0)]),
        (["chat"], [2.0], [(params_chat, 2.0)]),
        ([], [], []),
        (["sql", "chat"], [0.3, 0.7], [(params_sql, 0.3), (params_chat, 0.7)]),
    ]:
        opts.set_active_adapters(adapters, names, weights)
        (out,) = model.run(["logits"], {"input_ids": ids}, opts)
        assert_close(out, T.reference_forward(lora_model, ids, params))


def test_several_run_options_on_one_model(
    model, adapters, lora_model, sql_ours, chat_ours, params_sql, params_chat, ids
):
    adapters.load(sql_ours, "sql")
    adapters.load(chat_ours, "chat")
    a, b = ml.RunOptions(), ml.RunOptions()
    a.set_active_adapters(adapters, ["sql"])
    b.set_active_adapters(adapters, ["chat"])
    for _ in range(2):
        assert_close(
            model.run(None, {"input_ids": ids}, a)[0], T.reference_forward(lora_model, ids, [(params_sql, 1.0)])
        )
        assert_close(
            model.run(None, {"input_ids": ids}, b)[0], T.reference_forward(lora_model, ids, [(params_chat, 1.0)])
        )


@pytest.mark.parametrize("output_names", [None, [], ["logits"]])
def test_output_names_none_or_empty_means_all(model, ids, output_names, baseline):
    outs = model.run(output_names, {"input_ids": ids})
    assert isinstance(outs, list) and len(outs) == 1
    assert_close(outs[0], baseline.run(ids))


def test_array_likes_are_converted_to_the_declared_dtype(model, ids, baseline):
    (from_list,) = model.run(["logits"], {"input_ids": ids.tolist()})
    assert_close(from_list, baseline.run(ids))


def test_non_contiguous_input_is_accepted(model, ids, baseline):
    wide = np.zeros((ids.shape[0], ids.shape[1] * 2), np.int64)
    wide[:, ::2] = ids
    view = wide[:, ::2]
    assert not view.flags.c_contiguous
    (out,) = model.run(["logits"], {"input_ids": view})
    assert_close(out, baseline.run(ids))


def test_outputs_own_their_memory(model, ids):
    (out,) = model.run(["logits"], {"input_ids": ids})
    assert out.flags.owndata and out.flags.writeable and out.flags.c_contiguous
    out[...] = 0  # writing does not touch the library
    (again,) = model.run(["logits"], {"input_ids": ids})
    assert np.abs(again).max() > 0


@pytest.mark.parametrize("batch,seq", [(1, 1), (1, 7), (3, 4)])
def test_batch_and_sequence_shapes(model, adapters, lora_model, sql_ours, params_sql, batch, seq):
    adapters.load(sql_ours, "sql")
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, ["sql"])
    x = T.make_input_ids(lora_model, batch=batch, seq=seq, seed=batch * 10 + seq)
    (out,) = model.run(["logits"], {"input_ids": x}, opts)
    assert out.shape == (batch, seq, lora_model.vocab)
    assert_close(out, T.reference_forward(lora_model, x, [(params_sql, 1.0)]))


def test_every_projection_adapted(wide_model, tmp_path):
    x = T.make_input_ids(wide_model, batch=2, seq=6, seed=1)
    p1 = T.make_adapter_params(wide_model, rank=4, seed=11)
    p2 = T.make_adapter_params(wide_model, rank=2, seed=12, modules=["up_proj", "down_proj", "o_proj"])
    ml.write_adapter(tmp_path / "p1.onnx_adapter", p1)
    ml.write_adapter(tmp_path / "p2.onnx_adapter", p2)
    base = OrtBaseline(wide_model.path)
    with ml.Model(wide_model.path) as model, ml.Adapters(model) as adapters, ml.RunOptions() as opts:
        assert len(model.lora_inputs) == 2 * 2 * 6
        adapters.load(tmp_path / "p1.onnx_adapter", "p1")
        adapters.load(tmp_path / "p2.onnx_adapter", "p2")
        opts.set_active_adapters(adapters, ["p1"])
        (out,) = model.run(["logits"], {"input_ids": x}, opts)
        assert_close(out, base.run(x, str(tmp_path / "p1.onnx_adapter")))
        assert_close(out, T.reference_forward(wide_model, x, [(p1, 1.0)]))
        opts.set_active_adapters(adapters, ["p1", "p2"], [0.5, 1.5])
        (out,) = model.run(["logits"], {"input_ids": x}, opts)
        assert_close(out, T.reference_forward(wide_model, x, [(p1, 0.5), (p2, 1.5)]))
        T.write_ort_adapter(tmp_path / "c.onnx_adapter", T.composite_params([(p1, 0.5), (p2, 1.5)]))
        assert_close(out, base.run(x, str(tmp_path / "c.onnx_adapter")))


def test_float16_model(tmp_path):
    info = T.make_lora_model(tmp_path / "f16.onnx", dtype=np.float16, seed=5, rank_dim="r_{layer}_{module}")
    x = T.make_input_ids(info, batch=2, seq=4, seed=2)
    p = T.make_adapter_params(info, rank=4, seed=6)
    assert all(v.dtype == np.float16 for v in p.values())
    ml.write_adapter(tmp_path / "a.onnx_adapter", p)
    with ml.Model(info.path) as model, ml.Adapters(model) as adapters:
        assert {li.dtype for li in model.lora_inputs} == {"float16"}
        adapters.load(tmp_path / "a.onnx_adapter", "a")
        opts = ml.RunOptions()
        opts.set_active_adapters(adapters, ["a"], [0.5])
        (out,) = model.run(["logits"], {"input_ids": x}, opts)
        assert out.dtype == np.float16
        base = OrtBaseline(info.path)
        T.write_ort_adapter(tmp_path / "half.onnx_adapter", T.composite_params([(p, 0.5)]))
        assert_close(out, base.run(x, str(tmp_path / "half.onnx_adapter")), rtol=1e-2, atol=1e-2)
        assert_close(out, T.reference_forward(info, x, [(p, 0.5)]), rtol=2e-2, atol=2e-2)


def test_model_listing_lora_inputs_twice(tmp_path: Path):
    info = T.make_lora_model(tmp_path / "dup.onnx", duplicate_inputs=True, seed=8)
    x = T.make_input_ids(info, seed=3)
    p = T.make_adapter_params(info, rank=3, seed=9)
    ml.write_adapter(tmp_path / "a.onnx_adapter", p)
    with ml.Model(info.path) as model, ml.Adapters(model) as adapters:
        assert [li.name for li in model.lora_inputs] == info.lora_names
        assert model.input_names == ["input_ids"]
        adapters.load(tmp_path / "a.onnx_adapter", "a")
        opts = ml.RunOptions()
        opts.set_active_adapters(adapters, ["a"])
        (out,) = model.run(["logits"], {"input_ids": x}, opts)
        assert_close(out, T.reference_forward(info, x, [(p, 1.0)]))


def test_model_description(model, lora_model):
    assert model.path == lora_model.path
    assert model.inputs == [ml.TensorInfo("input_ids", "int64", (None, None))]
    assert model.outputs == [ml.TensorInfo("logits", "float32", (None, None, lora_model.vocab))]
    loras = model.lora_inputs
    assert [li.name for li in loras] == lora_model.lora_names
    a, b = loras[0], loras[1]
    assert (a.kind, a.shape, a.rank_axis, a.features, a.dtype) == ("A", (16, None), 1, 16, "float32")
    assert (b.kind, b.shape, b.rank_axis, b.features, b.dtype) == ("B", (None, 16), 0, 16, "float32")


def test_model_options(lora_model, ids, baseline):
    opts = ml.ModelOptions(log_level=3, intra_op_threads=1, config={"session.intra_op.allow_spinning": "0"})
    assert "intra_op_threads=1" in repr(opts)
    with ml.Model(lora_model.path, opts) as model:
        assert_close(model.run(None, {"input_ids": ids})[0], baseline.run(ids))
    with ml.Model(lora_model.path, intra_op_threads=2) as model:
        assert_close(model.run(None, {"input_ids": ids})[0], baseline.run(ids))
    with pytest.raises(ml.InvalidArgumentError) as e:
        ml.ModelOptions(log_level=7)
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "7")
    with pytest.raises(ml.InvalidArgumentError) as e:
        ml.ModelOptions(intra_op_threads=-1)
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "-1")


# ---- bad run inputs ----------------------------------------------------------------------------


def test_run_wrong_input_dtype(model, ids):
    with pytest.raises(ml.TypeMismatchError) as e:
        model.run(None, {"input_ids": ids.astype(np.int32)})
    assert_error(e, ml.TypeMismatchError, "MLORA_STATUS_TYPE_MISMATCH", "input_ids", "int64", "int32")
    assert isinstance(e.value, TypeError)


def test_run_wrong_input_rank(model, ids):
    with pytest.raises(ml.ShapeMismatchError) as e:
        model.run(None, {"input_ids": ids[0]})
    assert_error(e, ml.ShapeMismatchError, "MLORA_STATUS_SHAPE_MISMATCH", "input_ids", "[5]")


def test_run_unknown_input(model, ids):
    with pytest.raises(ml.NotFoundError) as e:
        model.run(None, {"input_ids": ids, "token_type_ids": ids})
    assert_error(e, ml.NotFoundError, "MLORA_STATUS_NOT_FOUND", "token_type_ids", "input_ids")


def test_run_unknown_output(model, ids):
    with pytest.raises(ml.NotFoundError) as e:
        model.run(["hidden_states"], {"input_ids": ids})
    assert_error(e, ml.NotFoundError, "MLORA_STATUS_NOT_FOUND", "hidden_states", "logits")


def test_run_missing_input(model):
    with pytest.raises(ml.InvalidArgumentError) as e:
        model.run(None, {})
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "input_ids")


def test_run_lora_input_as_feed(model, ids, lora_model, params_sql):
    name = lora_model.lora_names[0]
    with pytest.raises(ml.InvalidArgumentError) as e:
        model.run(None, {"input_ids": ids, name: params_sql[name]})
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", name)


def test_run_onnxruntime_failure(model, ids):
    with pytest.raises(ml.OnnxRuntimeError) as e:
        model.run(None, {"input_ids": ids + 1000})
    assert_error(e, ml.OnnxRuntimeError, "MLORA_STATUS_RUNTIME", "Gather")


def test_run_unsupported_numpy_dtype(model, ids):
    with pytest.raises(ml.TypeMismatchError) as e:
        model.run(None, {"input_ids": ids.astype(np.complex64)})
    assert_error(e, ml.TypeMismatchError, "MLORA_STATUS_TYPE_MISMATCH", "input_ids", "complex64")


def test_run_feed_must_be_a_mapping(model, ids):
    with pytest.raises(TypeError, match="mapping"):
        model.run(None, [ids])  # type: ignore[arg-type]
