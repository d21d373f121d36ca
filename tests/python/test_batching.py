"""Adapter-aware batching: `multilora prepare-batching` (both kernels), RunOptions.set_active_adapters_per_row
and the model's slot table.

Every row of a mixed batch must equal that row run alone with its own active set on the *unprepared* model,
and the numpy reference. Generation with per-row sets is in test_batching_generation.py; the CLI in
test_cli.py.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import multilora as ml
from multilora import testing as T
from multilora.prepare_batching import prepare_batching

from support import assert_close, assert_error

TOL = 1e-5
KERNELS = ("fused", "gather")
Weights = Optional[List[List[float]]]


@pytest.fixture(scope="module")
def batch_models(tmp_path_factory: pytest.TempPathFactory) -> Tuple[T.LoraModel, Dict[str, str]]:
    d = tmp_path_factory.mktemp("batching")
    info = T.make_lora_model(
        d / "base.onnx", layers=2, hidden=16, modules=("q_proj", "v_proj", "o_proj", "up_proj", "down_proj"), seed=3
    )
    paths = {}
    for kernel in KERNELS:
        paths[kernel] = str(d / f"prepared_{kernel}.onnx")
        prepare_batching(info.path, paths[kernel], kernel=kernel)
    return info, paths


@pytest.fixture(scope="module")
def adapter_params(batch_models) -> Dict[str, Dict[str, np.ndarray]]:
    """Ranks 1, 2, 4, 8 over overlapping projections: one pair sees several ranks across rows."""
    info, _ = batch_models
    return {
        "sql": T.make_adapter_params(info, rank=4, seed=11),
        "chat": T.make_adapter_params(info, rank=2, seed=12, modules=("q_proj", "up_proj")),
        "tiny": T.make_adapter_params(info, rank=1, seed=13, layers=[1]),
        "big": T.make_adapter_params(info, rank=8, seed=14, modules=("v_proj", "o_proj")),
    }


@pytest.fixture(scope="module")
def adapter_files(adapter_params, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    d = tmp_path_factory.mktemp("batching_adapters")
    files = {}
    for name, params in adapter_params.items():
        files[name] = str(d / f"{name}.onnx_adapter")
        T.write_ort_adapter(files[name], params)
    return files


def _open(path: str, files: Dict[str, str], **options: int) -> Tuple[ml.Model, ml.Adapters]:
    model = ml.Model(path, **options)
    adapters = ml.Adapters(model)
    for name, f in files.items():
        adapters.load(f, name)
    return model, adapters


@pytest.fixture(scope="module")
def plain(batch_models, adapter_files) -> Iterator[Tuple[ml.Model, ml.Adapters]]:
    """The unprepared model: the per-row results' independent reference (one row per run)."""
    info, _ = batch_models
    model, adapters = _open(info.path, adapter_files)
    yield model, adapters
    adapters.close()
    model.close()


@pytest.fixture(params=KERNELS)
def prepared(request, batch_models, adapter_files):
    info, paths = batch_models
    model, adapters = _open(paths[request.param], adapter_files)
    yield info, model, adapters
    adapters.close()
    model.close()


def _ids(info: T.LoraModel, batch: int, seq: int = 5, seed: int = 7) -> np.ndarray:
    return T.make_input_ids(info, batch=batch, seq=seq, seed=seed)


def _row_weights(rows: Sequence[Sequence[str]], weights: Weights, i: int) -> List[float]:
    return list(weights[i]) if weights is not None else [1.0] * len(rows[i])


def _reference(info, params, ids: np.ndarray, rows, weights: Weights = None) -> np.ndarray:
    out = []
    for i, row in enumerate(rows):
        w = _row_weights(rows, weights, i)
        out.append(T.reference_forward(info, ids[i : i + 1], [(params[n], wi) for n, wi in zip(row, w)]))
    return np.concatenate(out)


def _alone(plain_model: ml.Model, plain_adapters: ml.Adapters, ids_row: np.ndarray, names, weights) -> np.ndarray:
    opts = ml.RunOptions()
    opts.set_active_adapters(plain_adapters, list(names), list(weights))
    (one,) = plain_model.run(["logits"], {"input_ids": ids_row}, opts)
    return one


def _check_rows(out, info, params, plain, ids, rows, weights: Weights = None) -> None:
    """Every row equals that row run alone on the unprepared model, and the numpy reference."""
    plain_model, plain_adapters = plain
    assert out.shape == (len(rows), ids.shape[1], info.vocab)
    for i, row in enumerate(rows):
        one = _alone(plain_model, plain_adapters, ids[i : i + 1], row, _row_weights(rows, weights, i))
        assert_close(out[i : i + 1], one, rtol=TOL, atol=TOL)
    assert_close(out, _reference(info, params, ids, rows, weights), rtol=TOL, atol=TOL)


def _run_rows(model: ml.Model, adapters: ml.Adapters, ids: np.ndarray, rows, weights: Weights = None):
    opts = ml.RunOptions()
    opts.set_active_adapters_per_row(adapters, rows, weights)
    (out,) = model.run(["logits"], {"input_ids": ids}, opts)
    return out


# ---- the rewrite ---------------------------------------------------------------------------------------


def _pairs_of(path: str) -> Dict[str, Tuple[str, str, str, str]]:
    """{A name: (x, B name, the base operand of the Add that reads the second MatMul, that Add's output)} read
    from the unprepared model's MatMuls."""
    g = onnx.load(path).graph
    by_output = {n.output[0]: n for n in g.node}
    out = {}
    for n in g.node:
        if n.op_type == "MatMul" and "lora_B" in n.input[1]:
            first = by_output[n.input[0]]
            assert first.op_type == "MatMul" and "lora_A" in first.input[1]
            (add,) = [u for u in g.node if n.output[0] in u.input]
            assert add.op_type == "Add"
            base = add.input[1] if add.input[0] == n.output[0] else add.input[0]
            out[first.input[1]] = (first.input[0], n.input[1], base, add.output[0])
    return out


def _dims(vi: onnx.ValueInfoProto) -> List[object]:
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in vi.type.tensor_type.shape.dim]


def _metadata(m: onnx.ModelProto) -> Dict[str, str]:
    return {p.key: p.value for p in m.metadata_props}


@pytest.mark.parametrize("kernel", KERNELS)
def test_rewrite_declares_stacked_inputs(batch_models, kernel):
    info, paths = batch_models
    m = onnx.load(paths[kernel])
    inputs = {i.name: i for i in m.graph.input}
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    for p in info.pairs:
        a, b = inputs[p.a_name], inputs[p.b_name]
        assert a.type.tensor_type.elem_type == b.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        ra, rb = _dims(a), _dims(b)
        assert ra[:2] == ["lora_slots", p.in_features] and isinstance(ra[2], str) and ra[2]
        assert rb == ["lora_slots", ra[2], p.out_features]  # one rank symbol per pair, shared by A and B
        assert inits[p.a_name].shape == (1, p.in_features, 0) and inits[p.b_name].shape == (1, 0, p.out_features)
    assert len({_dims(inputs[p.a_name])[2] for p in info.pairs}) == len(info.pairs)
    slot = inputs["lora_slot"]
    assert slot.type.tensor_type.elem_type == onnx.TensorProto.INT64 and _dims(slot) == ["lora_batch"]
    assert inits["lora_slot"].dtype == np.int64 and inits["lora_slot"].tolist() == [0]
    assert _metadata(m)["multilora.batching_kernel"] == kernel


def test_fused_rewrite_contract(batch_models):
    """The node the kernel implements: one com.multilora.LoraSlotMatMul per pair, exactly, which took in the
    pair's Add (base operand as input 5, the Add's output as its own)."""
    info, paths = batch_models
    original = _pairs_of(info.path)
    assert len(original) == len(info.pairs) == 10
    m = onnx.load(paths["fused"])
    g = m.graph
    fused = [n for n in g.node if n.op_type == "LoraSlotMatMul"]
    assert len(fused) == len(info.pairs)
    order = sorted(original)  # code-point order of the A names
    seen = set()
    for n in fused:
        assert n.domain == "com.multilora"
        x, a, b, slot, ranks, base = n.input
        assert (slot, ranks) == ("lora_slot", "lora_ranks")
        assert original[a] == (x, b, base, n.output[0])
        assert len(n.output) == 1
        (attr,) = n.attribute
        assert attr.name == "pair" and attr.type == onnx.AttributeProto.INT and attr.i == order.index(a)
        assert a.split(".lora_A")[0] in n.name  # readable: named after its projection
        seen.add(a)
    assert seen == set(original)
    assert len({n.name for n in g.node}) == len(g.node)
    # No MatMul and no Gather reads a LoRA input any more; no Add is left of the pairs'.
    lora = {n for p in info.pairs for n in (p.a_name, p.b_name)}
    for n in g.node:
        if n.op_type != "LoraSlotMatMul":
            assert not lora & set(n.input), n.name
    added = {o for n in g.node if n.op_type == "Add" for o in n.output}
    assert not added & {pair[3] for pair in original.values()}
    before = sum(n.op_type == "Add" for n in onnx.load(info.path).graph.node)
    assert sum(n.op_type == "Add" for n in g.node) == before - len(fused)
    assert not any(n.op_type == "Gather" and n.input[1] == "lora_slot" for n in g.node)
    # lora_ranks: int64 [P, lora_slots], default zeros [P, 1]
    ranks_vi = next(i for i in g.input if i.name == "lora_ranks")
    assert ranks_vi.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert _dims(ranks_vi) == [len(info.pairs), "lora_slots"]
    default = onnx.numpy_helper.to_array(next(t for t in g.initializer if t.name == "lora_ranks"))
    assert default.dtype == np.int64 and default.shape == (len(info.pairs), 1) and not default.any()
    assert {(o.domain, o.version) for o in m.opset_import} >= {("com.multilora", 1)}
    assert [o for o in m.opset_import if o.domain == ""] == [o for o in onnx.load(info.path).opset_import]
    # Every intermediate x·A is gone (no dangling value_info).
    produced = {o for n in g.node for o in n.output}
    assert all(vi.name in produced for vi in g.value_info)


def test_gather_rewrite_structure(batch_models):
    info, paths = batch_models
    g = onnx.load(paths["gather"]).graph
    assert not any(n.domain == "com.multilora" for n in g.node)
    assert "lora_ranks" not in {i.name for i in g.input}
    gathers = [n for n in g.node if n.op_type == "Gather" and list(n.input[1:]) == ["lora_slot"]]
    assert sorted(n.input[0] for n in gathers) == sorted(info.lora_names)


def test_prepare_returns_pairs_in_graph_order(batch_models, tmp_path):
    info, _ = batch_models
    for kernel in KERNELS:
        assert prepare_batching(info.path, tmp_path / f"{kernel}.onnx", kernel=kernel) == [p.a_name for p in info.pairs]
    prepare_batching(info.path, tmp_path / "default.onnx")
    assert _metadata(onnx.load(str(tmp_path / "default.onnx")))["multilora.batching_kernel"] == "fused"


def test_gather_model_keeps_the_base_output_in_plain_onnxruntime(batch_models):
    info, paths = batch_models
    ids = _ids(info, 3)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    base = ort.InferenceSession(info.path, so).run(["logits"], {"input_ids": ids})[0]
    out = ort.InferenceSession(paths["gather"], so).run(["logits"], {"input_ids": ids})[0]
    np.testing.assert_array_equal(out, base)


@pytest.mark.parametrize("kernel", KERNELS)
def test_prepared_model_keeps_lora_inputs_and_version(batch_models, kernel):
    info, paths = batch_models
    with ml.Model(info.path) as plain_model, ml.Model(paths[kernel]) as prepared_model:
        assert [i.name for i in prepared_model.lora_inputs] == [i.name for i in plain_model.lora_inputs]
        assert prepared_model.version == plain_model.version
        assert [i.name for i in prepared_model.inputs] == ["input_ids"]  # lora_slot, lora_ranks are ours


def test_prepare_twice_is_an_error(batch_models, tmp_path):
    _, paths = batch_models
    for kernel in KERNELS:
        for again in KERNELS:
            with pytest.raises(ValueError, match="prepared already"):
                prepare_batching(paths[kernel], tmp_path / "again.onnx", kernel=again)


def test_unknown_kernel_is_an_error(batch_models, tmp_path):
    info, _ = batch_models
    with pytest.raises(ValueError, match="unknown kernel 'sgmv'"):
        prepare_batching(info.path, tmp_path / "x.onnx", kernel="sgmv")
    assert not (tmp_path / "x.onnx").exists()


def test_fused_needs_float32(tmp_path):
    info = T.make_lora_model(tmp_path / "half.onnx", layers=1, hidden=8, dtype=np.float16, seed=1)
    with pytest.raises(ValueError) as e:
        prepare_batching(info.path, tmp_path / "fused.onnx")
    msg = str(e.value)
    assert info.pairs[0].a_name in msg and "float16" in msg and "--kernel gather" in msg
    assert not (tmp_path / "fused.onnx").exists()
    assert prepare_batching(info.path, tmp_path / "gather.onnx", kernel="gather") == [p.a_name for p in info.pairs]


@pytest.mark.parametrize("kernel", KERNELS)
def test_checker_still_validates_past_unknown_ops(tmp_path, kernel):
    """An onnxruntime contrib op in the default domain (as in GenAI builder models) is tolerated, but a broken
    node after it is still reported."""
    info = T.make_lora_model(tmp_path / "m.onnx", layers=1, hidden=8, seed=2)
    m = onnx.load(info.path)
    embed = m.graph.node[0].output[0]
    extra = [
        onnx.helper.make_node("SimplifiedLayerNormalization", [embed], ["extra/norm"], name="extra/norm"),
        onnx.helper.make_node("Relu", ["extra/norm", "extra/norm"], ["extra/relu"], name="extra/relu"),  # 2 inputs
    ]
    nodes = [m.graph.node[0], *extra, *m.graph.node[1:]]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    broken = str(tmp_path / "broken.onnx")
    onnx.save(m, broken)
    with pytest.raises(onnx.checker.ValidationError, match="Relu"):
        prepare_batching(broken, tmp_path / "out.onnx", kernel=kernel)
    del m.graph.node[2]  # only the unknown op left: fine
    ok = str(tmp_path / "ok.onnx")
    onnx.save(m, ok)
    assert len(prepare_batching(ok, tmp_path / "out.onnx", kernel=kernel)) == len(info.pairs)


# ---- runs -----------------------------------------------------------------------------------------------


def test_nothing_fed_is_bit_equal_to_the_base_model(batch_models, plain, adapter_files):
    info, paths = batch_models
    ids = _ids(info, 3)
    (base,) = plain[0].run(["logits"], {"input_ids": ids})
    for kernel in KERNELS:
        model, adapters = _open(paths[kernel], adapter_files)
        with model, adapters:
            (out,) = model.run(["logits"], {"input_ids": ids})
            np.testing.assert_array_equal(out, base, err_msg=kernel)
            opts = ml.RunOptions()
            opts.set_active_adapters_per_row(adapters, [[], [], []])
            (out,) = model.run(["logits"], {"input_ids": ids}, opts)
            np.testing.assert_array_equal(out, base, err_msg=kernel)
    assert_close(base, T.reference_forward(info, ids), rtol=TOL, atol=TOL)


ROW_CASES = [
    pytest.param([["sql"], [], ["chat", "sql"], ["chat"]], None, id="mixed"),
    pytest.param([["sql"], ["chat"], ["big"], ["tiny"]], None, id="ranks-4-2-8-1"),
    pytest.param([["sql", "chat", "tiny"], ["big"], [], ["sql"], ["chat", "big"], []], None, id="six-rows"),
    pytest.param(
        [["sql", "chat"], ["sql", "chat"], ["big", "tiny"], []],
        [[0.5, 2.0], [1.0, -1.0], [0.25, 3.0], []],
        id="weighted",
    ),
    pytest.param([["sql"], ["sql"], ["sql"]], [[1.0], [0.5], [1.0]], id="same-names-other-weights"),
    pytest.param([["big", "chat"], ["sql"], ["big", "chat"], ["sql"], []], None, id="repeated-sets"),
    pytest.param([["chat"], [], ["chat"]], None, id="pairs-no-row-uses"),  # v/o/down_proj: rank 0 everywhere
    pytest.param([["big"]], [[-2.0]], id="one-row"),
    pytest.param([[], []], None, id="none"),
    pytest.param([["tiny"]], [[0.0]], id="zero-weight"),
]


@pytest.mark.parametrize("rows,weights", ROW_CASES)
def test_rows_equal_rows_run_alone_and_reference(prepared, plain, adapter_params, rows, weights):
    info, model, adapters = prepared
    ids = _ids(info, len(rows))
    out = _run_rows(model, adapters, ids, rows, weights)
    _check_rows(out, info, adapter_params, plain, ids, rows, weights)


def test_many_rows_and_long_sequences(prepared, plain, adapter_params):
    """Enough rows and tokens for the kernel to split work over rows and token blocks."""
    info, model, adapters = prepared
    sets = [["sql"], [], ["chat", "big"], ["tiny"], ["big"]]
    rows = [sets[(i * 3) % len(sets)] for i in range(12)]
    ids = _ids(info, len(rows), seq=33, seed=21)
    out = _run_rows(model, adapters, ids, rows)
    _check_rows(out, info, adapter_params, plain, ids, rows)


def test_same_options_run_again_and_with_other_inputs(prepared, plain, adapter_params):
    info, model, adapters = prepared
    rows = [["big"], ["sql", "tiny"], []]
    opts = ml.RunOptions()
    opts.set_active_adapters_per_row(adapters, rows)
    for seed, seq in ((1, 5), (2, 3), (1, 5)):
        ids = _ids(info, 3, seq=seq, seed=seed)
        (out,) = model.run(["logits"], {"input_ids": ids}, opts)
        _check_rows(out, info, adapter_params, plain, ids, rows)


def test_single_set_on_prepared_model_matches_plain_model(prepared, adapter_params):
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


def test_core_detects_the_kernel_from_the_graph_not_the_metadata(batch_models, plain, adapter_files, tmp_path):
    """The metadata entry is for humans: a fused model without it (or with a wrong one) runs the same."""
    info, paths = batch_models
    m = onnx.load(paths["fused"])
    del m.metadata_props[:]
    m.metadata_props.add(key="multilora.batching_kernel", value="gather")
    path = str(tmp_path / "relabelled.onnx")
    onnx.save(m, path)
    rows = [["big", "chat"], [], ["sql"]]
    ids = _ids(info, 3)
    model, adapters = _open(path, adapter_files)
    with model, adapters:
        out = _run_rows(model, adapters, ids, rows)
    model, adapters = _open(paths["fused"], adapter_files)
    with model, adapters:
        np.testing.assert_array_equal(out, _run_rows(model, adapters, ids, rows))
    plain_model, plain_adapters = plain
    for i, row in enumerate(rows):
        one = _alone(plain_model, plain_adapters, ids[i : i + 1], row, [1.0] * len(row))
        assert_close(out[i : i + 1], one, rtol=TOL, atol=TOL)


def test_gather_kernel_serves_float16(tmp_path):
    info = T.make_lora_model(tmp_path / "half.onnx", layers=2, hidden=16, dtype=np.float16, seed=4)
    prepare_batching(info.path, tmp_path / "gather.onnx", kernel="gather")
    params = {"x": T.make_adapter_params(info, rank=4, seed=1), "y": T.make_adapter_params(info, rank=2, seed=2)}
    files = {}
    for name, p in params.items():
        files[name] = str(tmp_path / f"{name}.onnx_adapter")
        T.write_ort_adapter(files[name], p)
    rows = [["x"], [], ["y", "x"]]
    ids = _ids(info, 3)
    model, adapters = _open(str(tmp_path / "gather.onnx"), files)
    plain_model, plain_adapters = _open(info.path, files)
    with model, adapters, plain_model, plain_adapters:
        out = _run_rows(model, adapters, ids, rows)
        assert out.dtype == np.float16
        for i, row in enumerate(rows):
            one = _alone(plain_model, plain_adapters, ids[i : i + 1], row, [1.0] * len(row))
            assert_close(out[i : i + 1], one, rtol=1e-3, atol=1e-3)
        assert_close(out, _reference(info, params, ids, rows), rtol=1e-2, atol=1e-2)


def test_a_name_replaced_in_the_registry_is_another_set(batch_models, adapter_files, adapter_params, tmp_path):
    """The slot table must key sets by the adapters they hold, not by their names: after `load(replace=True)`
    the old options keep the old adapter and new options get the new one, even while the old set is resident."""
    info, paths = batch_models
    new_params = T.make_adapter_params(info, rank=3, seed=99, modules=("q_proj", "down_proj"))
    new_file = str(tmp_path / "sql_v2.onnx_adapter")
    T.write_ort_adapter(new_file, new_params)
    ids = _ids(info, 2, seed=3)
    rows = [["sql"], ["chat", "sql"]]
    for kernel in KERNELS:
        model, adapters = _open(paths[kernel], adapter_files, batch_slots=4)
        with model, adapters:
            old = ml.RunOptions()
            old.set_active_adapters_per_row(adapters, rows)
            (out_old,) = model.run(["logits"], {"input_ids": ids}, old)
            adapters.load(new_file, "sql", replace=True)
            new = ml.RunOptions()
            new.set_active_adapters_per_row(adapters, rows)
            (out_new,) = model.run(["logits"], {"input_ids": ids}, new)
            (out_old_again,) = model.run(["logits"], {"input_ids": ids}, old)
        params_new = dict(adapter_params, sql=new_params)
        assert_close(out_old, _reference(info, adapter_params, ids, rows), rtol=TOL, atol=TOL)
        assert_close(out_old_again, out_old, rtol=TOL, atol=TOL)
        assert_close(out_new, _reference(info, params_new, ids, rows), rtol=TOL, atol=TOL)


# ---- the slot table -------------------------------------------------------------------------------------


def test_batch_slots_reported(batch_models, adapter_files):
    info, paths = batch_models
    for kernel in KERNELS:
        with ml.Model(paths[kernel]) as m:
            assert tuple(m.batch_slots) == (17, 0)  # the documented default
        with ml.Model(paths[kernel], batch_slots=3) as m:
            assert tuple(m.batch_slots) == (3, 0)
        with ml.Model(paths[kernel], options=ml.ModelOptions(batch_slots=2)) as m:
            assert tuple(m.batch_slots) == (2, 0)
        with ml.Model(paths[kernel], batch_slots=4097) as m:
            assert m.batch_slots.slots == 4097
    with ml.Model(info.path, batch_slots=3) as m:  # ignored by a model not prepared
        assert tuple(m.batch_slots) == (0, 0)


@pytest.mark.parametrize("slots", [0, 1, 4098, 5000, -1])
def test_bad_slot_count(batch_models, slots):
    _, paths = batch_models
    with pytest.raises(ml.InvalidArgumentError) as e:
        ml.ModelOptions(batch_slots=slots)
    assert str(slots) in str(e.value) and "2..4097" in str(e.value)
    with pytest.raises(ml.InvalidArgumentError):
        ml.Model(paths["fused"], batch_slots=slots)


# Five distinct sets (the same names with another weight is another set), over ranks 1..8.
CYCLE: List[Tuple[List[str], List[float]]] = [
    (["sql"], [1.0]),
    (["chat"], [1.0]),
    (["big"], [1.0]),
    (["tiny", "chat"], [1.0, 1.0]),
    (["sql"], [-0.5]),
]


@pytest.mark.parametrize("kernel", KERNELS)
def test_slot_evictions_keep_every_result_right(batch_models, plain, adapter_files, adapter_params, kernel):
    """S=3 (two resident sets), batches cycling through five sets: every set is evicted and placed again,
    in slots that held sets of other ranks."""
    info, paths = batch_models
    model, adapters = _open(paths[kernel], adapter_files, batch_slots=3)
    with model, adapters:
        ids = _ids(info, 3, seed=5)
        assert tuple(model.batch_slots) == (3, 0)
        seen = set()
        for k in range(12):
            first, second = CYCLE[k % 5], CYCLE[(k * 2 + 1) % 5]
            rows = [first[0], [], second[0]]
            weights = [first[1], [], second[1]]
            out = _run_rows(model, adapters, ids, rows, weights)
            _check_rows(out, info, adapter_params, plain, ids, rows, weights)
            seen |= {k % 5, (k * 2 + 1) % 5}
            # The table persists across runs (sets stay resident until evicted) and never exceeds S-1.
            assert tuple(model.batch_slots) == (3, min(len(seen), 2)), k


@pytest.mark.parametrize("kernel", KERNELS)
def test_eviction_picks_the_least_recently_used_set(batch_models, adapter_files, plain, adapter_params, kernel):
    """S=3 (two usable slots). Runs with A, B, A, C: C must evict B (least recently used), so A stays
    resident — a following A is a hit and a following B a miss. Evicting the most recently used set (A)
    would turn both around."""
    info, paths = batch_models
    model, adapters = _open(paths[kernel], adapter_files, batch_slots=3)
    with model, adapters:
        ids = _ids(info, 2)
        sets = {"A": ["sql"], "B": ["chat"], "C": ["big"]}
        assert tuple(model.batch_slot_stats) == (0, 0, 0)

        def run(label: str) -> None:
            rows = [sets[label], []]
            _check_rows(_run_rows(model, adapters, ids, rows), info, adapter_params, plain, ids, rows)

        for label in "ABAC":
            run(label)
        # A, B: misses into free slots; A: a hit; C: a miss that evicts one set.
        assert tuple(model.batch_slot_stats) == (1, 3, 1)
        run("A")
        assert tuple(model.batch_slot_stats) == (2, 3, 1), "A was evicted: the most recently used set went"
        run("B")
        assert tuple(model.batch_slot_stats) == (2, 4, 2), "B was still resident"
        assert model.batch_slots.resident == 2


def test_slot_stats_of_a_model_without_batching(lora_model):
    with ml.Model(lora_model.path) as m:
        assert m.batch_slot_stats == ml.BatchSlotStats(0, 0, 0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_more_distinct_sets_than_slots_is_an_error(batch_models, adapter_files, plain, adapter_params, kernel):
    info, paths = batch_models
    model, adapters = _open(paths[kernel], adapter_files, batch_slots=3)
    with model, adapters:
        opts = ml.RunOptions()
        with pytest.raises(ml.InvalidArgumentError) as e:
            opts.set_active_adapters_per_row(adapters, [["sql"], ["chat"], [], ["big"], ["tiny"]])
        assert_error(
            e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "4 distinct", "holds 2", "batch_slots"
        )
        assert opts.active_count == 0  # unchanged
        # Empty rows use slot 0 and repeated sets one slot: two distinct sets fit.
        rows = [["sql"], [], ["chat", "big"], ["sql"], [], ["chat", "big"]]
        ids = _ids(info, len(rows))
        out = _run_rows(model, adapters, ids, rows)
        _check_rows(out, info, adapter_params, plain, ids, rows)
    model, adapters = _open(paths[kernel], adapter_files, batch_slots=2)
    with model, adapters:
        with pytest.raises(ml.InvalidArgumentError) as e:
            ml.RunOptions().set_active_adapters_per_row(adapters, [["sql"], ["sql"], ["chat"]])
        assert_error(
            e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "2 distinct", "holds 1", "batch_slots"
        )
        rows = [["sql"], [], ["sql"]]
        ids = _ids(info, 3)
        _check_rows(_run_rows(model, adapters, ids, rows), info, adapter_params, plain, ids, rows)


@pytest.mark.parametrize("kernel", KERNELS)
def test_threads_share_a_small_slot_table(batch_models, plain, adapter_files, adapter_params, kernel):
    """4 threads, S=3, each running two-set batches with other sets than its neighbours: runs wait for
    pinned slots, nothing deadlocks, every row is right."""
    info, paths = batch_models
    ids = _ids(info, 3, seed=9)
    # Independent references, computed before the threads start: per (set index, row).
    refs = {}
    for s, (names, weights) in enumerate(CYCLE):
        for r in range(3):
            refs[s, r] = _alone(plain[0], plain[1], ids[r : r + 1], names, weights)
    base = [plain[0].run(["logits"], {"input_ids": ids[r : r + 1]})[0] for r in range(3)]
    model, adapters = _open(paths[kernel], adapter_files, batch_slots=3)
    errors: List[BaseException] = []
    runs = [0] * 4

    def worker(t: int) -> None:
        try:
            for k in range(20):
                a, b = (t + k) % 5, (t + 2 * k + 1) % 5
                if a == b:
                    b = (b + 1) % 5
                opts = ml.RunOptions()
                opts.set_active_adapters_per_row(
                    adapters, [CYCLE[a][0], [], CYCLE[b][0]], [CYCLE[a][1], [], CYCLE[b][1]]
                )
                (out,) = model.run(["logits"], {"input_ids": ids}, opts)
                assert_close(out[0:1], refs[a, 0], rtol=TOL, atol=TOL)
                assert_close(out[1:2], base[1], rtol=TOL, atol=TOL)
                assert_close(out[2:3], refs[b, 2], rtol=TOL, atol=TOL)
                runs[t] += 1
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    with model, adapters:
        threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        assert not any(th.is_alive() for th in threads), "a run never finished (deadlock on the slot table?)"
        if errors:
            raise errors[0]
        assert runs == [20] * 4
        assert model.batch_slots.resident <= 2


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


# ---- a GenAI builder model --------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
def test_genai_builder_model(tmp_path, kernel):
    """A model from onnxruntime-genai's builder (shared "lora_r", SimplifiedLayerNormalization, KV inputs)."""
    import json
    import shutil

    src = Path(__file__).parent / "fixtures" / "generation" / "lora"
    d = tmp_path / "lora"
    shutil.copytree(src, d, ignore=shutil.ignore_patterns("model.onnx"))
    prepare_batching(src / "model.onnx", d / "model.onnx", kernel=kernel)
    head = int(json.loads((d / "genai_config.json").read_text())["model"]["decoder"]["head_size"])
    plain_model, prepared_model = ml.Model(str(src)), ml.Model(str(d))
    assert prepared_model.version == plain_model.version
    regs = [ml.Adapters(plain_model), ml.Adapters(prepared_model)]
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
    (out,) = prepared_model.run(["logits"], feeds(prepared_model, ids), opts)
    for i, row in enumerate(rows):
        alone = ml.RunOptions()
        alone.set_active_adapters(regs[0], row, weights[i])
        (one,) = plain_model.run(["logits"], feeds(plain_model, ids[i : i + 1]), alone)
        assert_close(out[i : i + 1], one, rtol=TOL, atol=TOL)
    (base,) = plain_model.run(["logits"], feeds(plain_model, ids))
    (none,) = prepared_model.run(["logits"], feeds(prepared_model, ids))
    np.testing.assert_array_equal(none, base)
