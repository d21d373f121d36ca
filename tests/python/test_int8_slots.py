"""int8 block-scaled slots (``prepare_batching(lora_dtype="int8")``, csrc/kernels/lora_slot_matmul.cpp,
ActiveSet's quantization, the slot table's scales).

The rule (docs/design.md §6): A [in, r] and B [r, out] are quantized per block of 32 rows along K (A's input
rows, B's rank rows) and per column: scale = absmax / 127 (float32), q = rint(v / scale) (ties to even; 0
where the scale is 0). The kernel widens q to float and multiplies each block's sum by its scale. References
here are numpy: the same rule (``quantize``), the dequantized values q·scale through the float64 model, and
ONNX Runtime's own LoRA path on the unprepared model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

import multilora as ml
from multilora import testing as T
from multilora.prepare_batching import INT8_BLOCK, SLOT_SCALES_METADATA_KEY, prepare_batching

from support import assert_close, assert_error, op_probe_model, open_with_adapters

BLOCK = INT8_BLOCK
# fp32 tolerance of the kernel tests (test_batching_kernel.py): the int8 kernel computes x·(q·s)·(q·s) with
# the same values as the numpy reference, only the fp32 summation order differs (blocks of 32 summed, then
# scaled: the products are the same up to one rounding each).
TOL = 2e-5
RANKS = {"r16": 16, "r20": 20, "r37": 37, "r3": 3}
ROWS = [["r16"], ["r20"], [], ["r37"], ["r3"], ["r16", "r20"]]


def quantize(v: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The rule, in numpy: v [rows, cols] float32, K along the rows; returns int8 [rows, cols] and float32
    scales [ceil(rows/32), cols]."""
    v = np.asarray(v, np.float32)
    rows, cols = v.shape
    blocks = -(-rows // BLOCK)
    q = np.zeros((rows, cols), np.int8)
    s = np.zeros((blocks, cols), np.float32)
    for b in range(blocks):
        blk = v[b * BLOCK : (b + 1) * BLOCK]
        scale = (np.abs(blk).max(axis=0) / np.float32(127)).astype(np.float32)
        safe = np.where(scale == 0, np.float32(1), scale)
        qb = np.where(scale == 0, np.float32(0), np.rint(blk / safe))
        q[b * BLOCK : (b + 1) * BLOCK] = np.clip(qb, -127, 127).astype(np.int8)
        s[b] = scale
    return q, s


def dequantize(q: np.ndarray, s: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * np.repeat(s, BLOCK, axis=0)[: q.shape[0]]


def int8_values(params: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """An adapter's values as int8 slots hold them: q·scale (float32)."""
    return {k: dequantize(*quantize(v)) for k, v in params.items()}


def composite(parts: List[Tuple[Dict[str, np.ndarray], float]]) -> Dict[str, np.ndarray]:
    """What a set of several adapters feeds (ActiveSet): A's concatenated along the rank, B's scaled by their
    weight and stacked; int8 slots quantize this composite (B's blocks of 32 rank rows span adapters)."""
    out = {}
    for k in parts[0][0]:
        if ".lora_A." in k:
            out[k] = np.concatenate([p[k] for p, _ in parts], axis=1)
        else:
            out[k] = np.concatenate([np.float32(w) * p[k] for p, w in parts], axis=0)
    return out


def row_values(params, row: List[str]) -> Dict[str, np.ndarray]:
    return int8_values(composite([(params[n], 1.0) for n in row]))


_open = open_with_adapters


def _run_rows(model, adapters, ids, rows):
    opts = ml.RunOptions()
    opts.set_active_adapters_per_row(adapters, rows)
    (out,) = model.run(["logits"], {"input_ids": ids}, opts)
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    """hidden 42 (A: two blocks of 32 input rows, the second partial), ranks 3..37 (B: rank rows 32..36 are
    a second block); the adapters as float32 files, and their int8-slot values (q·scale) as float32 files
    too (for ONNX Runtime's LoRA path on the unprepared model)."""
    d = tmp_path_factory.mktemp("int8")
    info = T.make_lora_model(d / "base.onnx", layers=1, hidden=42, modules=("q_proj", "up_proj", "down_proj"), seed=5)
    prepare_batching(info.path, d / "int8.onnx", kernel="fused", lora_dtype="int8")
    prepare_batching(info.path, d / "fp32.onnx", kernel="fused")
    params = {n: T.make_adapter_params(info, rank=r, seed=40 + r) for n, r in RANKS.items()}
    deq = {"+".join(row): row_values(params, row) for row in ROWS if row}
    files, files_deq = {}, {}
    for n in deq:
        files_deq[n] = str(d / f"{n}.deq.onnx_adapter")
        T.write_ort_adapter(files_deq[n], deq[n])
    for n in params:
        files[n] = str(d / f"{n}.onnx_adapter")
        T.write_ort_adapter(files[n], params[n])
    return info, str(d / "int8.onnx"), str(d / "fp32.onnx"), params, deq, files, files_deq


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seq", [1, 3, 5, 17])
def test_rows_equal_numpy_and_ort_on_the_int8_values(setup, seq, threads):
    """Every row of a per-row batch equals the float64 model fed the int8 values (q·scale of the numpy rule,
    applied to the row's composite) and ONNX Runtime's LoRA path on the unprepared model fed the same values,
    within the fp32 tolerance: the quantization follows the rule and the kernel computes with those values."""
    info, path, _, params, deq, files, files_deq = setup
    model, adapters = _open(path, files, intra_op_threads=threads)
    plain, plain_adapters = _open(info.path, files_deq)
    with model, adapters, plain, plain_adapters:
        ids = T.make_input_ids(info, batch=len(ROWS), seq=seq, seed=seq)
        out = _run_rows(model, adapters, ids, ROWS)
        for i, row in enumerate(ROWS):
            key = ["+".join(row)] if row else []
            ref = T.reference_forward(info, ids[i : i + 1], [(deq[k], 1.0) for k in key])
            assert_close(out[i : i + 1], ref, rtol=TOL, atol=TOL)
            opts = ml.RunOptions()
            opts.set_active_adapters(plain_adapters, key)
            (alone,) = plain.run(["logits"], {"input_ids": ids[i : i + 1]}, opts)
            assert_close(out[i : i + 1], alone, rtol=TOL, atol=TOL)


def test_batch_rows_equal_each_row_alone(setup):
    """A row's output does not depend on its neighbours: the batch equals each row run alone (batch 1, the
    set fed directly, not through the slot table), bit for bit."""
    info, path, _, _, _, files, _ = setup
    model, adapters = _open(path, files)
    with model, adapters:
        ids = T.make_input_ids(info, batch=len(ROWS), seq=4, seed=9)
        out = _run_rows(model, adapters, ids, ROWS)
        for i, row in enumerate(ROWS):
            opts = ml.RunOptions()
            opts.set_active_adapters(adapters, row)
            (alone,) = model.run(["logits"], {"input_ids": ids[i : i + 1]}, opts)
            np.testing.assert_array_equal(out[i : i + 1], alone)


def test_slots_rewritten_at_other_ranks(setup):
    """S = 3: slots are evicted and rewritten at other ranks, and the storage (and B's scale blocks) grows from
    rank 3 to 37; every row stays equal to the numpy model on its int8 values."""
    info, path, _, params, _, files, _ = setup
    model, adapters = _open(path, files, batch_slots=3)
    with model, adapters:
        ids = T.make_input_ids(info, batch=2, seq=3, seed=2)
        for rows in ([["r3"], []], [["r3"], ["r16"]], [["r20"], ["r37"]], [["r3"], ["r16"]], [["r37"], ["r3"]]):
            out = _run_rows(model, adapters, ids, rows)
            for i, row in enumerate(rows):
                ref = T.reference_forward(info, ids[i : i + 1], [(row_values(params, row), 1.0)] if row else [])
                assert_close(out[i : i + 1], ref, rtol=TOL, atol=TOL)


def test_weighted_mix_is_quantized_after_composition(setup):
    """A weighted mix is composed in float32 (A's concatenated, B's scaled by the weights) and then quantized:
    the numpy reference quantizes the same composite."""
    info, path, _, params, _, files, _ = setup
    model, adapters = _open(path, files)
    with model, adapters:
        ids = T.make_input_ids(info, batch=1, seq=3, seed=4)
        opts = ml.RunOptions()
        opts.set_active_adapters(adapters, ["r16", "r3"], [0.5, -1.25])
        (out,) = model.run(["logits"], {"input_ids": ids}, opts)
        mix = composite([(params["r16"], 0.5), (params["r3"], -1.25)])
        ref = T.reference_forward(info, ids, [(int8_values(mix), 1.0)])
        assert_close(out, ref, rtol=TOL, atol=TOL)


def test_error_against_float32_is_bounded(setup):
    """int8 slots against ONNX Runtime's LoRA path with the float32 files. Each value moves by at most half a
    step, absmax/254 of its block, i.e. (absmax/rms)/254 of the block's rms; for 32 Gaussian values absmax/rms
    stays below ~3.5, so A and B each move the LoRA term x·A·B by about 3.5/254 = 1.4% of its size (random
    signs: the same order as the term itself, not its absolute sum), 2.8% for both. We allow 3% of the largest
    logit change the adapter causes (plus the fp32 tolerance). Measured: 0.5-1.0%. The error must also not
    be zero (the slots are quantized at all)."""
    info, path, _, params, _, files, _ = setup
    model, adapters = _open(path, files)
    plain, plain_adapters = _open(info.path, files)
    with model, adapters, plain, plain_adapters:
        ids = T.make_input_ids(info, batch=len(ROWS), seq=6, seed=3)
        out = _run_rows(model, adapters, ids, ROWS)
        (base,) = plain.run(["logits"], {"input_ids": ids})
        for i, row in enumerate(ROWS):
            opts = ml.RunOptions()
            opts.set_active_adapters(plain_adapters, row)
            (ref,) = plain.run(["logits"], {"input_ids": ids[i : i + 1]}, opts)
            effect = float(np.abs(ref - base[i : i + 1]).max())
            err = float(np.abs(out[i : i + 1] - ref).max())
            assert err <= 0.03 * effect + TOL, (row, err, effect)
            if row:
                assert err > 1e-4 * effect, (row, err, effect)


def test_half_adapters_and_model_signature(setup, tmp_path):
    """float16/bfloat16 files load into int8 slots (quantized from their values); an int8 file does not (the
    slots' scales are not in adapter files); the prepared model keeps the float32 model's signature and lists
    no scales input among its LoRA inputs; the metadata maps every LoRA input to its scales input."""
    import ml_dtypes
    import onnx

    info, path, fp32_path, params, _, _, _ = setup
    p16 = {k: v.astype(np.float16) for k, v in params["r16"].items()}
    f16 = str(tmp_path / "f16.onnx_adapter")
    T.write_ort_adapter(f16, p16)
    pbf = {k: v.astype(ml_dtypes.bfloat16) for k, v in params["r20"].items()}
    fbf = str(tmp_path / "bf16.onnx_adapter")
    ml.write_adapter(fbf, pbf)
    f8 = str(tmp_path / "i8.onnx_adapter")
    ml.write_adapter(f8, {k: np.zeros(v.shape, np.int8) for k, v in params["r3"].items()})
    with ml.Model(path) as model, ml.Model(fp32_path) as fp32, ml.Adapters(model) as adapters:
        assert model.version == fp32.version
        assert [i.name for i in model.lora_inputs] == [i.name for i in fp32.lora_inputs]
        assert {i.dtype for i in model.lora_inputs} == {"int8"}
        adapters.load(f16, "f16")
        adapters.load(fbf, "bf16")
        ids = T.make_input_ids(info, batch=2, seq=2, seed=6)
        out = _run_rows(model, adapters, ids, [["f16"], ["bf16"]])
        for i, vals in enumerate([p16, pbf]):
            deq = int8_values({k: v.astype(np.float32) for k, v in vals.items()})
            assert_close(out[i : i + 1], T.reference_forward(info, ids[i : i + 1], [(deq, 1.0)]), rtol=TOL, atol=TOL)
        with pytest.raises(ml.TypeMismatchError) as e:
            adapters.load(f8, "i8")
        assert_error(e, ml.TypeMismatchError, "MLORA_STATUS_TYPE_MISMATCH", "int8", "float32, float16 or bfloat16")
    m = onnx.load(path, load_external_data=False)
    (scales,) = [json.loads(p.value) for p in m.metadata_props if p.key == SLOT_SCALES_METADATA_KEY]
    lora = {i.name for i in ml.Model(fp32_path).lora_inputs}
    assert set(scales) == lora and all(v == k + "_scales" for k, v in scales.items())
    base = onnx.load(str(Path(path).with_name("int8.base.onnx")), load_external_data=False)
    assert not any(p.key == SLOT_SCALES_METADATA_KEY for p in base.metadata_props)
    assert not {i.name for i in base.graph.input} & (set(scales) | set(scales.values()))


def test_prepare_int8_needs_the_fused_kernel(setup, tmp_path):
    info = setup[0]
    with pytest.raises(ValueError, match="int8 needs --kernel fused"):
        prepare_batching(info.path, tmp_path / "g.onnx", kernel="gather", lora_dtype="int8")


def test_engine_cache_key_has_the_slot_dtype(tmp_path):
    from multilora.engine import _folder_key

    (tmp_path / "genai_config.json").write_text("{}")
    keys = {_folder_key(str(tmp_path), dt) for dt in ("auto", "float16", "bfloat16", "int8")}
    assert len(keys) == 4


# ---- the op itself, fed directly ------------------------------------------------------------------------
# A hand-made graph y = LoraSlotMatMul(x, A, B, slot, ranks, "", A_scales, B_scales) with every input a
# regular graph input, so the test gives arbitrary int8 values and scales (not from the quantization).


def _op_model(path: Path, with_scales: bool = True) -> str:
    from onnx import TensorProto, helper

    names, extra = ["x", "A", "B", "slot", "ranks"], []
    if with_scales:
        extra = [
            helper.make_tensor_value_info("A_scales", TensorProto.FLOAT, ["S", "ab", "R"]),
            helper.make_tensor_value_info("B_scales", TensorProto.FLOAT, ["S", "bb", "out"]),
        ]
        names += ["", "A_scales", "B_scales"]
    return op_probe_model(str(path), TensorProto.INT8, extra, names, [], [])


def _op_inputs(rng, batch, tokens, n_in, out, slots_ranks, R):
    S = len(slots_ranks)
    x = rng.standard_normal((batch, tokens, n_in)).astype(np.float32)
    A = np.zeros((S, n_in, R), np.int8)
    B = np.zeros((S, R, out), np.int8)
    As = np.zeros((S, -(-n_in // BLOCK), R), np.float32)
    Bs = np.zeros((S, -(-R // BLOCK), out), np.float32)
    dense = []
    for s, r in enumerate(slots_ranks):
        qa = rng.integers(-127, 128, (n_in, r)).astype(np.int8)
        qb = rng.integers(-127, 128, (r, out)).astype(np.int8)
        sa = rng.uniform(0.5, 2.0, (-(-n_in // BLOCK), r)).astype(np.float32) / 127
        sb = rng.uniform(0.5, 2.0, (-(-r // BLOCK), out)).astype(np.float32) / 127
        A[s].reshape(-1)[: n_in * r] = qa.reshape(-1)  # packed [in, r], stride r
        As[s].reshape(-1)[: sa.size] = sa.reshape(-1)
        B[s, :r] = qb
        Bs[s, : sb.shape[0]] = sb
        dense.append((dequantize(qa, sa).astype(np.float64), dequantize(qb, sb).astype(np.float64)))
    return x, A, B, As, Bs, dense


@pytest.mark.parametrize("tokens", [1, 2, 3, 5, 17])
def test_op_equals_numpy_on_arbitrary_int8_and_scales(tmp_path, tokens):
    """Slots of ranks 0, 3, 12, 16, 20, 37, 40 (8-column chunks, tails, B's second scale block), in 80
    (three A blocks, the last partial), out 70 (a 6-output tail); rows on different slots. Bound: an fp32
    sum of n products errs by at most n·2^-24 of the sum of their magnitudes (first order), n = in + R + 2
    roundings on a path through x·A, the scale, ·B and the scale."""
    rng = np.random.default_rng(tokens)
    n_in, out, ranks = 80, 70, [0, 3, 12, 16, 20, 37, 40]
    R = max(ranks)
    x, A, B, As, Bs, dense = _op_inputs(rng, len(ranks), tokens, n_in, out, ranks, R)
    slot = np.arange(len(ranks), dtype=np.int64)[::-1].copy()
    with ml.Model(_op_model(tmp_path / "op.onnx")) as m:
        feeds = {"x": x, "A": A, "B": B, "slot": slot, "ranks": np.array([ranks], np.int64)}
        (y,) = m.run(["y"], {**feeds, "A_scales": As, "B_scales": Bs})
    for row, s in enumerate(slot):
        a, b = dense[s]
        ref = x[row].astype(np.float64) @ a @ b
        bound = (n_in + R + 2) * 2.0**-24 * (np.abs(x[row]).astype(np.float64) @ np.abs(a) @ np.abs(b)) + 1e-30
        assert np.all(np.abs(y[row] - ref) <= bound), (row, s, float(np.abs(y[row] - ref).max()))


NODE = "LoraSlotMatMul node 'probe/LoraSlotMatMul'"


def test_op_refuses_missing_or_misshapen_scales(tmp_path):
    """int8 A/B without scales, scales of the wrong shape: INVALID_ARGUMENT, the message names the node, the
    input and the shape it expected."""
    rng = np.random.default_rng(0)
    x, A, B, As, Bs, _ = _op_inputs(rng, 1, 2, 40, 24, [8], 8)
    feeds = {"x": x, "A": A, "B": B, "slot": np.zeros(1, np.int64), "ranks": np.array([[8]], np.int64)}
    with ml.Model(_op_model(tmp_path / "no.onnx", with_scales=False)) as m:
        with pytest.raises(ml.InvalidArgumentError) as e:
            m.run(["y"], feeds)
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", NODE, "A_scales is missing")
    with ml.Model(_op_model(tmp_path / "op.onnx")) as m:
        for bad_as, bad_bs, name, want in [
            (As[:, :1], Bs, "A_scales", "[1, 2, 8]"),
            (As, np.zeros((1, 2, 24), np.float32), "B_scales", "[1, 1, 24]"),
            (As.reshape(1, 16, 1), Bs, "A_scales", "[1, 2, 8]"),
        ]:
            with pytest.raises(ml.InvalidArgumentError) as e:
                m.run(["y"], {**feeds, "A_scales": bad_as, "B_scales": bad_bs})
            assert_error(
                e,
                ml.InvalidArgumentError,
                "MLORA_STATUS_INVALID_ARGUMENT",
                NODE,
                f"{name} is float32",
                f"expected float32 {want}",
            )


# ---- the quantization, bit for bit --------------------------------------------------------------------
# A model y = x·W + (x·A)·B with W = 0 and x one-hot rows: with B = c·I (c = 127·2^-7, so every non-zero
# column of B has scale exactly 2^-7 and q = 127), row i of y is exactly fl(fl(qA[i]·sA)·127)·2^-7 (every
# other product is 0, sums of zeros are exact, and 2^-7 scales exactly); with A = c·I likewise
# fl(fl(qB[i]·c)·sB). numpy computes the same float32 expressions from its own quantization, so any int8
# value or scale that differs from the rule's changes the output's bits.


def _probe_model(path: Path, n_in: int, out: int) -> Tuple[str, str, str]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    a, b = "probe.lora_A.weight", "probe.lora_B.weight"
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["base"], name="base"),
            helper.make_node("MatMul", ["x", a], ["xa"], name="probe/lora_A/MatMul"),
            helper.make_node("MatMul", ["xa", b], ["delta"], name="probe/lora_B/MatMul"),
            helper.make_node("Add", ["base", "delta"], ["y"], name="add"),
        ],
        "probe",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", n_in]),
            helper.make_tensor_value_info(a, TensorProto.FLOAT, [n_in, "r"]),
            helper.make_tensor_value_info(b, TensorProto.FLOAT, ["r", out]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", out])],
        [
            numpy_helper.from_array(np.zeros((n_in, out), np.float32), "W"),
            numpy_helper.from_array(np.zeros((n_in, 0), np.float32), a),
            numpy_helper.from_array(np.zeros((0, out), np.float32), b),
        ],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    src = path.with_name(path.stem + ".src.onnx")
    onnx.save(m, str(src))
    prepare_batching(src, path, kernel="fused", lora_dtype="int8")
    return str(path), a, b


@pytest.mark.parametrize("rank", [3, 12, 16, 20, 40])
def test_quantization_is_the_rule_bit_for_bit(tmp_path, rank):
    n_in, out = 80, 70
    path, a_name, b_name = _probe_model(tmp_path / "probe.onnx", n_in, out)
    rng = np.random.default_rng(rank)
    c = np.float32(127 * 2.0**-7)
    # values of several magnitudes, a zero column, a column that is zero in one block only, a column of ties
    A = (rng.standard_normal((n_in, rank)) * rng.choice([1e-3, 1.0, 30.0], size=(1, rank))).astype(np.float32)
    A[:, 0] = 0
    A[32:64, rank - 1] = 0
    B = (rng.standard_normal((rank, out)) * rng.choice([1e-2, 1.0, 7.0], size=(1, out))).astype(np.float32)
    B[:, 5] = 0
    # exact ties: a column whose every block has absmax 127 (scale exactly 1) and otherwise values k + 1/2 of
    # both signs, so v / scale is a tie that rint sends to the even neighbour
    ties = lambda n: ((np.arange(n) % 40) + 0.5) * np.where(np.arange(n) % 3 == 0, -1, 1)  # noqa: E731
    A[:, 1 % rank] = ties(n_in)
    A[::BLOCK, 1 % rank] = 127
    B[:, 6] = ties(rank)
    B[::BLOCK, 6] = 127
    eye_b = np.zeros((rank, out), np.float32)
    eye_b[np.arange(rank), np.arange(rank)] = c
    eye_a = np.zeros((n_in, rank), np.float32)
    eye_a[np.arange(rank), np.arange(rank)] = c
    probes = {"pa": {a_name: A, b_name: eye_b}, "pb": {a_name: eye_a, b_name: B}}
    files = {}
    for n, p in probes.items():
        files[n] = str(tmp_path / f"{n}.onnx_adapter")
        T.write_ort_adapter(files[n], p)
    qa, sa = quantize(A)
    qb, sb = quantize(B)
    fa = (qa.astype(np.float32) * np.repeat(sa, BLOCK, axis=0)[:n_in]).astype(np.float32)  # fl(q·s)
    want_a = np.zeros((n_in, out), np.float32)
    want_a[:, :rank] = (fa * np.float32(127)).astype(np.float32) * np.float32(2.0**-7)
    fb = (qb.astype(np.float32) * c).astype(np.float32)
    want_b = np.zeros((n_in, out), np.float32)
    want_b[:rank] = fb * np.repeat(sb, BLOCK, axis=0)[:rank]
    x = np.eye(n_in, dtype=np.float32)[None]
    with ml.Model(path) as model, ml.Adapters(model) as adapters:
        for n, f in files.items():
            adapters.load(f, n)
        opts = ml.RunOptions()
        opts.set_active_adapters_per_row(adapters, [["pa"], ["pb"]])
        (y,) = model.run(["y"], {"x": np.concatenate([x, x])}, opts)
    np.testing.assert_array_equal(y[0], want_a)
    np.testing.assert_array_equal(y[1], want_b)


# ---- int4 adapters held exactly ---------------------------------------------------------------------------


@pytest.mark.parametrize("block,k,r", [(32, 80, 5), (64, 80, 40), (32, 40, 37)])
def test_int4_blocks_are_held_exactly(tmp_path, block, k, r):
    """A MatMulNBits LoRA pair (4 bits, zero points, blocks of 32 or 64 along K, K not a multiple of the block;
    test_int4.py's hand-made model) prepared with int8 slots: the adapter's blocks are held as int8 = q - zero
    point with the file's scales, so each row equals numpy's reading of the blocks within the fp32 tolerance
    test_int4.py uses for float32 slots. Requantizing them instead (absmax/127 scales) moves the outputs by
    ~1e-2 here. A weighted B is requantized (the weight cannot be folded into the file's scales exactly)."""
    from test_int4 import _nbits_model, _quantize

    out = 24
    model = tmp_path / "nbits.onnx"
    _nbits_model(model, k, r, out, 4, block)
    rng = np.random.default_rng(block + k + r)
    files, deqs = {}, {}
    for name in ("p", "q"):
        aq, as_, azp, a_deq = _quantize(rng.standard_normal((r, k)).astype(np.float32), 4, block, rng)
        bq, bs, bzp, b_deq = _quantize(rng.standard_normal((out, r)).astype(np.float32), 4, block, rng)
        files[name] = str(tmp_path / f"{name}.onnx_adapter")
        ml.write_adapter(files[name], {"A_q": aq, "A_s": as_, "A_zp": azp, "B_q": bq, "B_s": bs, "B_zp": bzp})
        deqs[name] = (a_deq.astype(np.float64), b_deq.astype(np.float64))
    import onnx

    w = onnx.numpy_helper.to_array(next(t for t in onnx.load(str(model)).graph.initializer if t.name == "W"))
    prepared = tmp_path / "int8.onnx"
    prepare_batching(str(model), str(prepared), kernel="fused", lora_dtype="int8")
    x = rng.standard_normal((3, 2, k)).astype(np.float32)
    with ml.Model(str(prepared)) as pm, ml.Adapters(pm) as reg:
        for name, f in files.items():
            reg.load(f, name)
        opts = ml.RunOptions()
        opts.set_active_adapters_per_row(reg, [["p"], [], ["q"]])
        (got,) = pm.run(["y"], {"x": x}, opts)
        opts = ml.RunOptions()
        opts.set_active_adapters(reg, ["p"], [0.5])
        (weighted,) = pm.run(["y"], {"x": x[:1]}, opts)
    for i, name in enumerate(["p", None, "q"]):
        want = x[i].astype(np.float64) @ w
        if name:
            a_deq, b_deq = deqs[name]
            want = want + (x[i] @ a_deq) @ b_deq
        np.testing.assert_allclose(got[i], want, rtol=0, atol=1e-4 * max(1.0, float(np.abs(want).max())))
    a_deq, b_deq = deqs["p"]
    b_req = dequantize(*quantize((0.5 * b_deq).astype(np.float32)))
    want = x[0].astype(np.float64) @ w + (x[0] @ a_deq) @ b_req
    np.testing.assert_allclose(weighted[0], want, rtol=0, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def test_engine_prepares_an_int8_copy(tmp_path, monkeypatch):
    """ml.Engine(..., lora_dtype="int8") prepares its own copy (its own cache key) with int8 slots; each request
    on one adapter equals ml.Generator alone on the plain folder with an adapter holding that adapter's int8
    values (the numpy rule)."""
    from test_engine import ADAPTER, LORA, PROMPTS, alone, params_for

    monkeypatch.setenv("MULTILORA_CACHE_DIR", str(tmp_path / "cache"))
    with ml.Model(str(LORA)) as model, ml.Adapters(model) as reg, ml.Adapters(model) as ref:
        for n, path in ADAPTER.items():
            reg.load(path, n)
            values = {k: np.asarray(v, np.float32) for k, v in ml.read_adapter(path).parameters.items()}
            f = str(tmp_path / f"{n}_int8.onnx_adapter")
            T.write_ort_adapter(f, int8_values(values))
            ref.load(f, n)
        with ml.Engine(model, max_batch_size=4, lora_dtype="int8", worker=False) as engine:
            assert {i.dtype for i in engine._runs.lora_inputs} == {"int8"}
            reqs = [
                (engine.submit(params_for(model, reg, s, max_length=len(p) + 8), p), p, s)
                for p in PROMPTS
                for s in ([], ["a"], ["b"])
            ]
            for req, prompt, s in reqs:
                assert req.tokens() == alone((model, ref), prompt, s, max_length=len(prompt) + 8, _ref="int8"), s
        assert len(os.listdir(tmp_path / "cache" / "prepared")) == 1


@pytest.mark.parametrize("seq", [1, 4])  # decode (one token per row) and prompt code paths
def test_scales_after_an_omitted_base_input(tmp_path, seq):
    """A pair whose output the graph adds itself (no Add folded): the op's input 5 is "" (ONNX's omitted optional
    input) and the scales follow at 6 and 7. ONNX Runtime infers shapes and runs it; the rows equal the folded
    model's up to float32 rounding (base + (x·A·B) instead of x·A·B accumulated onto base)."""
    import onnx
    from onnx import helper

    info = T.make_lora_model(tmp_path / "m.onnx", layers=1, hidden=42, modules=("q_proj", "up_proj"), seed=5)
    folded = str(tmp_path / "folded.onnx")
    prepare_batching(info.path, folded, kernel="fused", lora_dtype="int8", base_graph=False)
    m = onnx.load(folded)
    nodes = []
    for n in m.graph.node:
        if n.op_type != "LoraSlotMatMul":
            nodes.append(n)
            continue
        assert len(n.input) == 8 and n.input[5] and n.input[6].endswith("_scales"), list(n.input)
        base, y = n.input[5], n.output[0]
        n.input[5] = ""
        n.output[0] = y + "_delta"
        nodes += [n, helper.make_node("Add", [base, y + "_delta"], [y], name=n.name + "_add")]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    unfolded = str(tmp_path / "unfolded.onnx")
    onnx.save(m, unfolded)
    f = str(tmp_path / "a.onnx_adapter")
    T.write_ort_adapter(f, T.make_adapter_params(info, rank=20, seed=3))
    ids = T.make_input_ids(info, batch=3, seq=seq, seed=2)
    outs = []
    for path in (folded, unfolded):
        model, adapters = open_with_adapters(path, {"a": f})
        with model, adapters:
            opts = ml.RunOptions()
            opts.set_active_adapters_per_row(adapters, [["a"], [], ["a"]])
            outs.append(model.run(["logits"], {"input_ids": ids}, opts)[0])
    assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    assert_close(outs[1][1:2], T.reference_forward(info, ids[1:2], []), rtol=1e-5, atol=1e-5)  # no adapter
    assert np.abs(outs[1][0:1] - T.reference_forward(info, ids[0:1], [])).max() > 1e-3  # the adapter's row moved
