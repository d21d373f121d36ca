"""int4 models end to end: the ONNX Runtime GenAI builder at ``-p int4`` + ``olive generate-adapter``, in both
forms (committed fixtures, tests/python/fixtures/build_int4_fixtures.py):

- ``q4``: the LoRA MatMuls quantized too (MatMulNBits pairs; adapters of ``*.weight_Q4`` / ``*.weight_scales``
  tensors; the nodes' K/N fix the rank at 4);
- ``x``: LoRA excluded from quantization (``nodes_to_exclude``): float LoRA inputs, int4 base weights.

References, independent of multilora: plain onnxruntime running the *unprepared* model with the adapter's
tensors fed as inputs (ONNX Runtime's own LoRA path), and onnxruntime-genai (``og.Adapters``).

Tolerances. Unprepared models: multilora feeds the same tensors to the same session, so logits must be
bitwise equal and tokens identical. Prepared models (``multilora prepare-batching``): each LoRA pair becomes
the fused kernel over float32 slots. For ``x`` that is the same fp32 math in another summation order (atol
1e-4 on logits of magnitude ~2-6, the bound the fp32 batching tests use). For ``q4`` the adapter's blocks are
dequantized into the slots and multiplied in fp32, while ONNX Runtime's MatMulNBits may quantize the
activations (accuracy_level=4). So the strict check is against ONNX Runtime with the LoRA nodes set to
accuracy_level=0 (fp32 activations: the same math, atol 1e-4); against the model as built the allowed error
is that same 1e-4 plus twice ONNX Runtime's own accuracy_level 4-vs-0 difference, measured in the same test
(0 on this fixture: ONNX Runtime cannot prepack fed weights, and its fallback multiplies in fp32).
On a large int4 model exact agreement is not expected: there the int8 activation quantization of the
following MatMulNBits layers amplifies fp32 rounding differences to ~0.2 in the logits — ONNX Runtime
against itself fed a mathematically equal split of the adapter differs as much (docs/notes.md, int4 round).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import multilora as ml
from multilora.generation import Generator, GeneratorParams
from multilora.prepare_batching import prepare_batching

from support import assert_error

FX = Path(__file__).parent / "fixtures" / "int4"
Q4, X, BASE = FX / "q4", FX / "x", FX / "base"
PROMPTS = [[4, 80, 44, 12, 37, 47, 73], [29, 6, 53, 30, 66], [50, 56, 6, 53, 39, 69, 11, 9, 24]]
ATOL = 1e-4
LAYERS, KV_HEADS, HEAD = 2, 1, 16


def _adapter(folder: Path, name: str) -> str:
    return str(folder / "adapters" / f"{name}.onnx_adapter")


def _params(folder: Path, name: str) -> Dict[str, np.ndarray]:
    return dict(ml.read_adapter(_adapter(folder, name)).parameters)


def _feeds(ids: np.ndarray) -> Dict[str, np.ndarray]:
    f = {"input_ids": ids.astype(np.int64), "attention_mask": np.ones_like(ids, dtype=np.int64)}
    for layer in range(LAYERS):
        for k in ("key", "value"):
            f[f"past_key_values.{layer}.{k}"] = np.zeros((ids.shape[0], KV_HEADS, 0, HEAD), np.float32)
    return f


def _session(model: onnx.ModelProto | Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, so)


def _ort_logits(model: onnx.ModelProto | Path, ids: np.ndarray, params: Dict[str, np.ndarray]) -> np.ndarray:
    return _session(model).run(["logits"], {**_feeds(ids), **params})[0]


def _lora_accuracy_level(folder: Path, level: int) -> onnx.ModelProto:
    m = onnx.load(str(folder / "model.onnx"))
    for n in m.graph.node:
        if n.op_type == "MatMulNBits" and "/lora_" in n.name:
            for a in n.attribute:
                if a.name == "accuracy_level":
                    a.i = level
    return m


def _with_rank(folder: Path, rank: int) -> onnx.ModelProto:
    """The q4 model with its quantized LoRA nodes re-declared for another rank (A's N, B's K; input shapes
    symbolic): plain ONNX Runtime can then run an adapter of that rank as the reference."""
    m = _lora_accuracy_level(folder, 0)
    for n in m.graph.node:
        if n.op_type == "MatMulNBits" and "/lora_" in n.name:
            for a in n.attribute:
                if a.name == ("N" if "/lora_A/" in n.name else "K"):
                    a.i = rank
    for vi in m.graph.input:
        if ".lora_" in vi.name:
            for d in vi.type.tensor_type.shape.dim:
                d.dim_param = "any"
    return m


def _ml_logits(model: ml.Model, ids: np.ndarray, opts: ml.RunOptions | None = None) -> np.ndarray:
    (out,) = model.run(["logits"], _feeds(ids), opts) if opts else model.run(["logits"], _feeds(ids))
    return out


def _ids(p: int) -> np.ndarray:
    return np.asarray([PROMPTS[p]], np.int64)


# ---- the quantized-LoRA form, unprepared ------------------------------------------------------------------


def test_q4_model_lists_the_quantized_lora_inputs():
    with ml.Model(str(Q4)) as m:
        lo = {x.name: x for x in m.lora_inputs}
    # 2 layers x 7 projections x (A, B) x (weight_Q4, weight_scales); the scales were once taken for A/B
    assert len(lo) == 56
    a = lo["model.layers.0.attn.q_proj.lora_A.MatMul.weight_Q4"]
    assert (a.kind, a.dtype, a.shape, a.features) == ("A", "uint8", (32, 4), 32)
    b = lo["model.layers.0.mlp.down_proj.lora_B.MatMul.weight_scales"]
    assert (b.kind, b.dtype, b.shape, b.features) == ("B", "float32", (4, 32), 32)
    a_down = lo["model.layers.1.mlp.down_proj.lora_A.MatMul.weight_Q4"]
    assert (a_down.kind, a_down.shape) == ("A", (64, 4))


def test_q4_adapter_rank_and_inspect():
    with ml.Adapter.open(_adapter(Q4, "a")) as a:
        assert a.rank == 4
    with ml.Adapter.open(_adapter(Q4, "b_r8")) as b:
        assert b.rank == 8
    from multilora.cli import _format, inspect_file

    text = _format(inspect_file(str(Q4)))
    assert "the model fixes the rank at 4" in text
    assert "weight_Q4" in text and "[32, 4]" in text


@pytest.mark.parametrize("name", ["a", "c"])
def test_q4_adapter_runs_as_onnxruntime_does(name):
    """Olive's quantized adapter loads (it was refused with AdapterNotFoundError) and feeds ONNX Runtime the
    very tensors ORT's own LoRA path would: logits bitwise equal, and different from the base."""
    with ml.Model(str(Q4)) as m, ml.Adapters(m) as reg:
        reg.load(_adapter(Q4, name), name)
        opts = ml.RunOptions()
        opts.set_active_adapters(reg, [name], [1.0])
        for p in range(len(PROMPTS)):
            got = _ml_logits(m, _ids(p), opts)
            want = _ort_logits(Q4 / "model.onnx", _ids(p), _params(Q4, name))
            np.testing.assert_array_equal(got, want)
            base = _ort_logits(BASE / "model.onnx", _ids(p), {})
            assert np.abs(want - base).max() > 0.1  # the adapter matters
            np.testing.assert_array_equal(_ml_logits(m, _ids(p)), base)  # no adapter: the int4 base model


def test_q4_weight_scales_b():
    """A weight w on a quantized pair scales B's scales: x·A·(w·B)."""
    params = _params(Q4, "a")
    scaled = {k: (v * np.float32(0.5) if ".lora_B." in k and k.endswith("_scales") else v) for k, v in params.items()}
    with ml.Model(str(Q4)) as m, ml.Adapters(m) as reg:
        reg.load(_adapter(Q4, "a"), "a")
        opts = ml.RunOptions()
        opts.set_active_adapters(reg, ["a"], [0.5])
        np.testing.assert_array_equal(_ml_logits(m, _ids(0), opts), _ort_logits(Q4 / "model.onnx", _ids(0), scaled))


@pytest.mark.parametrize("form,name", [("quantized", "a"), ("excluded", "b")])
def test_generation_equals_onnxruntime_genai(form, name):
    """Both LoRA forms of the int4 model, unprepared: greedy tokens equal onnxruntime-genai's with og.Adapters."""
    og = pytest.importorskip("onnxruntime_genai")
    folder = Q4 if form == "quantized" else X
    ogm = og.Model(str(folder))
    oga = og.Adapters(ogm)
    oga.load(_adapter(folder, name), name)
    lengths = []
    with ml.Model(str(folder)) as m, ml.Adapters(m) as reg:
        reg.load(_adapter(folder, name), name)
        for prompt in PROMPTS:
            params = og.GeneratorParams(ogm)
            params.set_search_options(max_length=len(prompt) + 12, do_sample=False)
            gen = og.Generator(ogm, params)
            gen.set_active_adapter(oga, name)
            gen.append_tokens(np.array([prompt], dtype=np.int32))
            while not gen.is_done():
                gen.generate_next_token()
            want = [int(t) for t in gen.get_sequence(0)[len(prompt) :]]
            with GeneratorParams(m) as gp:
                gp.set_search_options(max_length=len(prompt) + 12)
                gp.set_active_adapters(reg, [name])
                with Generator(m, gp) as g:
                    g.append_tokens(np.asarray(prompt, dtype=np.int32))
                    while not g.is_done():
                        g.generate_next_token()
                    got = g.get_sequence(0)[len(prompt) :].tolist()
            assert got[: len(want)] == want
            lengths.append(len(want))
    assert max(lengths) >= 4  # not just an eos: the comparison says something


def test_q4_adapter_of_another_rank_is_refused():
    with ml.Model(str(Q4)) as m, ml.Adapters(m) as reg:
        with pytest.raises(ml.ShapeMismatchError) as e:
            reg.load(_adapter(Q4, "b_r8"), "b")
        assert_error(
            e, ml.ShapeMismatchError, "MLORA_STATUS_SHAPE_MISMATCH", "fixes the rank at 4", "the adapter's rank is 8"
        )


def test_q4_incomplete_quantized_group_is_refused(tmp_path):
    params = _params(Q4, "a")
    del params["model.layers.0.attn.q_proj.lora_A.MatMul.weight_scales"]
    path = tmp_path / "partial.onnx_adapter"
    ml.write_adapter(str(path), params)
    with ml.Model(str(Q4)) as m, ml.Adapters(m) as reg:
        with pytest.raises(ml.FormatError) as e:
            reg.load(str(path), "p")
        assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "weight_scales")


def test_q4_two_adapters_on_one_quantized_pair_are_refused():
    with ml.Model(str(Q4)) as m, ml.Adapters(m) as reg:
        reg.load(_adapter(Q4, "a"), "a")
        reg.load(_adapter(Q4, "c"), "c")
        opts = ml.RunOptions()
        with pytest.raises(ml.InvalidArgumentError) as e:
            opts.set_active_adapters(reg, ["a", "c"], [1.0, 1.0])
            _ml_logits(m, _ids(0), opts)
        assert_error(
            e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "one adapter at a time", "prepare-batching"
        )


# ---- prepared for per-row batching --------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["fused", "gather"])
def prepared_q4(request, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp(f"q4_{request.param}") / "q4"
    prepare_batching(str(Q4), str(d), kernel=request.param)
    return d


def test_prepared_q4_records_the_dequantized_inputs(prepared_q4):
    m = onnx.load(str(prepared_q4 / "model.onnx"))
    meta = {p.key: p.value for p in m.metadata_props}
    assert "multilora.dequantize" in meta
    assert not any(n.op_type == "MatMulNBits" and "/lora_" in n.name for n in m.graph.node)
    with ml.Model(str(prepared_q4)) as pm:
        names = {x.name: x for x in pm.lora_inputs}
    a = names["model.layers.0.attn.q_proj.lora_A.MatMul.weight"]
    assert (a.dtype, a.shape) == ("float32", (32, None))  # any rank now


def test_prepared_q4_per_row_matches_onnxruntime(prepared_q4):
    """Rows a, base, c, b (rank 8: the prepared model serves any rank) in one Run, each against ONNX Runtime
    on the unprepared model with that adapter's tensors fed."""
    rows: List[List[str]] = [["a"], [], ["c"], ["b_r8"]]
    ids = np.asarray([PROMPTS[0][:5], PROMPTS[1][:5], PROMPTS[2][:5], PROMPTS[0][2:7]], np.int64)
    acc0 = _lora_accuracy_level(Q4, 0)
    with ml.Model(str(prepared_q4)) as pm, ml.Adapters(pm) as reg:
        for name in ("a", "c", "b_r8"):
            reg.load(_adapter(Q4, name), name)
        assert reg.get("a").rank == 4 and reg.get("b_r8").rank == 8
        opts = ml.RunOptions()
        opts.set_active_adapters_per_row(reg, rows)
        got = _ml_logits(pm, ids, opts)
    for i, row in enumerate(rows):
        one = ids[i : i + 1]
        if not row:
            np.testing.assert_allclose(got[i : i + 1], _ort_logits(BASE / "model.onnx", one, {}), rtol=0, atol=ATOL)
            continue
        params = _params(Q4, row[0])
        if row[0] == "b_r8":
            strict = _ort_logits(_with_rank(Q4, 8), one, params)
            np.testing.assert_allclose(got[i : i + 1], strict, rtol=0, atol=ATOL)
            continue
        strict = _ort_logits(acc0, one, params)
        as_built = _ort_logits(Q4 / "model.onnx", one, params)
        np.testing.assert_allclose(got[i : i + 1], strict, rtol=0, atol=ATOL)
        spread = float(np.abs(as_built - strict).max())  # ONNX Runtime's own activation quantization
        np.testing.assert_allclose(got[i : i + 1], as_built, rtol=0, atol=ATOL + 2 * spread)
        assert np.abs(strict - _ort_logits(BASE / "model.onnx", one, {})).max() > 0.1


def _dequantize(q: np.ndarray, scales: np.ndarray, k: int) -> np.ndarray:
    """numpy reading of a symmetric 4-bit MatMulNBits weight (q [N, blocks, 16], low nibble first, zero point
    8): the float matrix [K, N] the node multiplies by."""
    n, blocks, _ = q.shape
    vals = np.stack([q & 15, q >> 4], axis=-1).reshape(n, blocks, -1).astype(np.float32) - 8.0
    w = (vals * scales.reshape(n, blocks, 1)).reshape(n, -1)[:, :k]
    return np.ascontiguousarray(w.T)


def _float_params(params: Dict[str, np.ndarray], weight: float = 1.0) -> Dict[str, np.ndarray]:
    """An adapter's quantized pairs as the float ``*.weight`` inputs of the LoRA-excluded model x."""
    out = {}
    for k, q in params.items():
        if not k.endswith("_Q4"):
            continue
        base = k[: -len("_Q4")]
        scales = params[base + "_scales"]
        if ".lora_A." in k:
            a = _dequantize(q, scales, _in_features(base))
            out[base] = a
    for k, a in list(out.items()):
        bq = k.replace(".lora_A.", ".lora_B.")
        out[bq] = _dequantize(params[bq + "_Q4"], params[bq + "_scales"], a.shape[1]) * np.float32(weight)
    return out


def _in_features(name: str) -> int:
    return 64 if "down_proj" in name else 32


@pytest.mark.parametrize("form", ["q4", "x"])
def test_prepared_base_graph_is_the_builders_base(tmp_path, form):
    """prepare-batching packs each attention's q/k/v MatMulNBits into one (the builder's qkv_proj): the LoRA
    graph has one MatMulNBits per attention feeding its three pairs' ops (column_offset 0, N_q, N_q + N_k,
    chained in place) and a GroupQueryAttention reading the packed output; the base graph has the builder's
    base model's nodes, its packed weights are the builder's bytes, and plain ONNX Runtime gives both the same
    logits bit for bit. Multilora's cleared run (the base graph) and its per-row run with every row empty
    (the LoRA graph, slot 0) give them too."""
    src = {"q4": Q4, "x": X}[form]
    out = tmp_path / form
    prepare_batching(str(src), str(out), kernel="fused")
    lora = onnx.load(str(out / "model.onnx"))
    base = onnx.load(str(out / "model.base.onnx"))
    builder = onnx.load(str(BASE / "model.onnx"))
    for layer in range(LAYERS):
        packed = [
            n for n in lora.graph.node if n.op_type == "MatMulNBits" and f"layers.{layer}/attn/qkv_proj" in n.name
        ]
        assert len(packed) == 1, [n.name for n in packed]
        assert not any(
            n.op_type == "MatMulNBits" and any(f"layers.{layer}/attn/{m}_proj/" in n.name for m in "qkv")
            for n in lora.graph.node
        )
        chain, cur = [], packed[0].output[0]
        while True:
            nxt = [
                n for n in lora.graph.node if n.op_type == "LoraSlotMatMul" and len(n.input) > 5 and n.input[5] == cur
            ]
            if not nxt:
                break
            chain.append({a.name: onnx.helper.get_attribute_value(a) for a in nxt[0].attribute}["column_offset"])
            cur = nxt[0].output[0]
        assert chain == [0, 32, 48]  # q: 2 heads x 16, k and v: 1 KV head x 16
        gqa = next(n for n in lora.graph.node if n.op_type == "GroupQueryAttention" and f"layers.{layer}/" in n.name)
        assert list(gqa.input[:3]) == [cur, "", ""]
    ops = lambda m: sorted((n.op_type, n.domain) for n in m.graph.node)  # noqa: E731
    assert ops(base) == ops(builder)
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in base.graph.initializer}
    for t in builder.graph.initializer:
        if "qkv_proj" in t.name:
            np.testing.assert_array_equal(weights[t.name], onnx.numpy_helper.to_array(t))
    for p in range(len(PROMPTS)):
        want = _ort_logits(BASE / "model.onnx", _ids(p), {})
        np.testing.assert_array_equal(_ort_logits(out / "model.base.onnx", _ids(p), {}), want)
        with ml.Model(str(out)) as pm:
            np.testing.assert_array_equal(_ml_logits(pm, _ids(p)), want)
            assert pm.session_runs.base == 1
        with ml.Model(str(out), base_graph=False) as pm, ml.Adapters(pm) as reg:
            opts = ml.RunOptions()
            opts.set_active_adapters_per_row(reg, [[]])
            np.testing.assert_array_equal(_ml_logits(pm, _ids(p), opts), want)


def test_q4_and_x_share_the_int4_base():
    for p in range(len(PROMPTS)):
        np.testing.assert_array_equal(
            _ort_logits(Q4 / "model.onnx", _ids(p), {}), _ort_logits(X / "model.onnx", _ids(p), {})
        )


def test_prepared_q4_composes_adapters(prepared_q4):
    """a + 0.5·c on a prepared q4 model (refused unprepared: the quantized nodes fix the rank): the dequantized
    blocks concatenate along the rank as float adapters do. Reference: ONNX Runtime on the LoRA-excluded
    model x (same int4 base, float LoRA inputs of any rank) fed numpy's dequantization of a and c,
    concatenated."""
    fa, fc = _float_params(_params(Q4, "a")), _float_params(_params(Q4, "c"), 0.5)
    ref_params = {k: np.concatenate([fa[k], fc[k]], axis=1 if ".lora_A." in k else 0) for k in fa}
    with ml.Model(str(prepared_q4)) as pm, ml.Adapters(pm) as reg:
        reg.load(_adapter(Q4, "a"), "a")
        reg.load(_adapter(Q4, "c"), "c")
        opts = ml.RunOptions()
        opts.set_active_adapters(reg, ["a", "c"], [1.0, 0.5])
        for p in range(len(PROMPTS)):
            got = _ml_logits(pm, _ids(p), opts)
            np.testing.assert_allclose(got, _ort_logits(X / "model.onnx", _ids(p), ref_params), rtol=0, atol=ATOL)
        # numpy's dequantization of a alone, through x, equals the q4 model's own quantized path
        np.testing.assert_allclose(
            _ort_logits(X / "model.onnx", _ids(0), fa),
            _ort_logits(Q4 / "model.onnx", _ids(0), _params(Q4, "a")),
            rtol=0,
            atol=ATOL,
        )


# ---- LoRA excluded from quantization (float LoRA, int4 base) -----------------------------------------------


@pytest.mark.parametrize("name", ["a", "b"])
def test_x_adapter_runs_as_onnxruntime_does(name):
    with ml.Model(str(X)) as m, ml.Adapters(m) as reg:
        reg.load(_adapter(X, name), name)
        assert reg.get(name).rank == {"a": 4, "b": 8}[name]
        opts = ml.RunOptions()
        opts.set_active_adapters(reg, [name], [1.0])
        for p in range(len(PROMPTS)):
            np.testing.assert_array_equal(
                _ml_logits(m, _ids(p), opts), _ort_logits(X / "model.onnx", _ids(p), _params(X, name))
            )


@pytest.mark.parametrize("kernel", ["fused", "gather"])
def test_prepared_x_per_row_matches_onnxruntime(tmp_path, kernel):
    d = tmp_path / "x"
    prepare_batching(str(X), str(d), kernel=kernel)
    rows: List[List[str]] = [["a"], [], ["b"], ["a", "b"]]
    ids = np.asarray([PROMPTS[0][:5], PROMPTS[1][:5], PROMPTS[2][:5], PROMPTS[0][2:7]], np.int64)
    pa, pb = _params(X, "a"), _params(X, "b")
    composite = {k: np.concatenate([pa[k], pb[k]], axis=1 if ".lora_A." in k else 0) for k in pa}
    refs = {"a": pa, "": {}, "b": pb, "a+b": composite}
    with ml.Model(str(d)) as pm, ml.Adapters(pm) as reg:
        reg.load(_adapter(X, "a"), "a")
        reg.load(_adapter(X, "b"), "b")
        opts = ml.RunOptions()
        opts.set_active_adapters_per_row(reg, rows)
        got = _ml_logits(pm, ids, opts)
    for i, row in enumerate(rows):
        want = _ort_logits(X / "model.onnx", ids[i : i + 1], refs["+".join(row)])
        np.testing.assert_allclose(got[i : i + 1], want, rtol=0, atol=ATOL)


# ---- zero points, K not a multiple of the block, 8-bit: a hand-made MatMulNBits pair ------------------------


def _pack(vals: np.ndarray, bits: int) -> np.ndarray:
    """[rows, count] values of `bits` bits packed little-end first into bytes."""
    per = 8 // bits
    rows, count = vals.shape
    padded = np.zeros((rows, -(-count // per) * per), np.uint8)
    padded[:, :count] = vals
    out = np.zeros((rows, padded.shape[1] // per), np.uint8)
    for j in range(per):
        out |= (padded[:, j::per] << (j * bits)).astype(np.uint8)
    return out


def _quantize(w: np.ndarray, bits: int, block: int, rng: np.random.Generator):
    """A random asymmetric quantization of w [N, K] as MatMulNBits stores it, and its float reading (numpy)."""
    n, k = w.shape
    blocks = -(-k // block)
    q = rng.integers(0, 2**bits, size=(n, blocks * block)).astype(np.uint8)
    zp = rng.integers(0, 2**bits, size=(n, blocks)).astype(np.uint8)
    scales = (rng.random((n, blocks)).astype(np.float32) * 0.2 + 0.05).astype(np.float32)
    deq = ((q.reshape(n, blocks, block).astype(np.float32) - zp[:, :, None]) * scales[:, :, None]).reshape(n, -1)[:, :k]
    qb = _pack(q.reshape(n * blocks, block), bits).reshape(n, blocks, block * bits // 8)
    return qb, scales, _pack(zp, bits), np.ascontiguousarray(deq.T)  # deq.T: [K, N]


def _nbits_model(path: Path, k: int, r: int, out: int, bits: int, block: int) -> None:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    w = rng.standard_normal((k, out)).astype(np.float32) * 0.2
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", k])]
    inits = [numpy_helper.from_array(w, "W")]
    specs = [
        ("A_q", TensorProto.UINT8, [r, 0, block * bits // 8]),
        ("A_s", TensorProto.FLOAT, [r, 0]),
        ("A_zp", TensorProto.UINT8, [r, 0]),
        ("B_q", TensorProto.UINT8, [out, 0, block * bits // 8]),
        ("B_s", TensorProto.FLOAT, [out, 0]),
        ("B_zp", TensorProto.UINT8, [out, 0]),
    ]
    for name, dt, dims in specs:
        np_dt = np.uint8 if dt == TensorProto.UINT8 else np.float32
        inits.append(numpy_helper.from_array(np.zeros(dims, np_dt), name))
        inputs.append(helper.make_tensor_value_info(name, dt, [d if d else f"{name}_d" for d in dims]))

    def nbits(inputs, output, name, k_dim, n_dim):
        return helper.make_node(
            "MatMulNBits",
            inputs,
            [output],
            name=name,
            domain="com.microsoft",
            K=k_dim,
            N=n_dim,
            bits=bits,
            block_size=block,
            accuracy_level=4,
        )

    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"], name="base/MatMul"),
        nbits(["x", "A_q", "A_s", "A_zp"], "xa", "lora_A/MatMul_Q", k, r),
        nbits(["xa", "B_q", "B_s", "B_zp"], "xab", "lora_B/MatMul_Q", r, out),
        helper.make_node("Add", ["xw", "xab"], ["y"], name="add"),
    ]
    g = helper.make_graph(
        nodes, "nbits", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", out])], inits
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    onnx.save(m, str(path))


@pytest.mark.parametrize("bits,block,k,r", [(4, 16, 40, 3), (8, 16, 24, 5)])
def test_zero_points_and_padding(tmp_path, bits, block, k, r):
    """Asymmetric blocks (uint8 zero points), K not a multiple of the block, 4 and 8 bits: unprepared, ONNX
    Runtime's path bitwise; prepared (fused), each row against numpy's own reading of the blocks."""
    out = 24
    model = tmp_path / "nbits.onnx"
    _nbits_model(model, k, r, out, bits, block)
    rng = np.random.default_rng(11)
    adapters, deqs = {}, {}
    for name, rank in (("p", r), ("q", r)):
        aq, as_, azp, a_deq = _quantize(rng.standard_normal((rank, k)).astype(np.float32), bits, block, rng)
        bq, bs, bzp, b_deq = _quantize(rng.standard_normal((out, rank)).astype(np.float32), bits, block, rng)
        params = {"A_q": aq, "A_s": as_, "A_zp": azp, "B_q": bq, "B_s": bs, "B_zp": bzp}
        path = tmp_path / f"{name}.onnx_adapter"
        ml.write_adapter(str(path), params)
        adapters[name], deqs[name] = (str(path), params), (a_deq, b_deq)
    x = rng.standard_normal((3, 2, k)).astype(np.float32)
    numpy_w = onnx.numpy_helper.to_array(next(t for t in onnx.load(str(model)).graph.initializer if t.name == "W"))
    with ml.Model(str(model)) as m, ml.Adapters(m) as reg:
        reg.load(adapters["p"][0], "p")
        opts = ml.RunOptions()
        opts.set_active_adapters(reg, ["p"], [1.0])
        (got,) = m.run(["y"], {"x": x}, opts)
        want = _session(model).run(["y"], {"x": x, **adapters["p"][1]})[0]
        np.testing.assert_array_equal(got, want)
        a_deq, b_deq = deqs["p"]
        np.testing.assert_allclose(want, x @ numpy_w + (x @ a_deq) @ b_deq, rtol=0, atol=1e-3)
        missing = dict(adapters["p"][1])
        del missing["A_zp"]
        ml.write_adapter(str(tmp_path / "nozp.onnx_adapter"), missing)
        with pytest.raises(ml.FormatError):
            reg.load(str(tmp_path / "nozp.onnx_adapter"), "nozp")
    prepared = tmp_path / "prepared.onnx"
    prepare_batching(str(model), str(prepared), kernel="fused")
    with ml.Model(str(prepared)) as pm, ml.Adapters(pm) as reg:
        for name in ("p", "q"):
            reg.load(adapters[name][0], name)
        opts = ml.RunOptions()
        opts.set_active_adapters_per_row(reg, [["p"], [], ["q"]])
        (got,) = pm.run(["y"], {"x": x}, opts)
    for i, name in enumerate(["p", None, "q"]):
        want = x[i] @ numpy_w
        if name:
            a_deq, b_deq = deqs[name]
            want = want + (x[i] @ a_deq) @ b_deq
        np.testing.assert_allclose(got[i], want, rtol=0, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def test_peft_folder_on_a_quantized_model_says_why(prepared_q4):
    """fixtures/peft/llama_a is the PEFT adapter baked into both int4 forms as "a". Its float weights cannot
    feed MatMulNBits inputs (NOT_FOUND saying why); on the LoRA-excluded model they equal Olive's extraction;
    the prepared q4 model's float inputs take them too, close to Olive's quantized file (4-bit rounding)."""
    peft = str(Path(__file__).parent / "fixtures" / "peft" / "llama_a")
    with ml.Model(str(Q4)) as m, ml.Adapters(m) as reg:
        with pytest.raises(ml.NotFoundError) as e:
            reg.load(peft, "p")
        assert_error(e, ml.NotFoundError, "MLORA_STATUS_NOT_FOUND", "quantized", "prepare-batching")
    with ml.Model(str(X)) as m, ml.Adapters(m) as reg:
        reg.load(peft, "p")
        opts = ml.RunOptions()
        opts.set_active_adapters(reg, ["p"], [1.0])
        want = _ort_logits(X / "model.onnx", _ids(0), _params(X, "a"))
        np.testing.assert_allclose(_ml_logits(m, _ids(0), opts), want, rtol=0, atol=ATOL)
    with ml.Model(str(prepared_q4)) as pm, ml.Adapters(pm) as reg:
        reg.load(peft, "p")
        reg.load(_adapter(Q4, "a"), "a")
        opts = ml.RunOptions()
        opts.set_active_adapters(reg, ["p"], [1.0])
        from_peft = _ml_logits(pm, _ids(0), opts)
        opts.set_active_adapters(reg, ["a"], [1.0])
        from_q4 = _ml_logits(pm, _ids(0), opts)
    base = _ort_logits(BASE / "model.onnx", _ids(0), {})
    np.testing.assert_allclose(from_peft, want, rtol=0, atol=ATOL)  # same float adapter, same int4 base
    # 4-bit rounding of A and B moves the LoRA delta a little, far less than the delta itself
    assert np.abs(from_q4 - from_peft).max() < 0.25 * np.abs(from_peft - base).max()


@pytest.mark.parametrize("lora_dtype", ["auto", "int8"])
def test_engine_on_a_plain_q4_folder(tmp_path, monkeypatch, lora_dtype):
    """The engine prepares a copy of a plain q4 folder and serves Olive's quantized adapters with it (they are
    dequantized for the copy's float inputs; with int8 slots held exactly, int8 = q - zero point with the file's
    scales): each request's tokens equal generation alone on the plain model."""
    monkeypatch.setenv("MULTILORA_CACHE_DIR", str(tmp_path / "cache"))
    with ml.Model(str(Q4)) as m, ml.Adapters(m) as reg:
        for name in ("a", "c"):
            reg.load(_adapter(Q4, name), name)
        params, want = [], []
        for i, adapters in enumerate([["a"], [], ["c"]]):
            p = GeneratorParams(m)
            p.set_search_options(max_length=len(PROMPTS[i]) + 10)
            if adapters:
                p.set_active_adapters(reg, adapters)
            params.append(p)
            with Generator(m, p) as g:
                g.append_tokens(np.asarray(PROMPTS[i], dtype=np.int32))
                while not g.is_done():
                    g.generate_next_token()
                want.append(g.get_sequence(0)[len(PROMPTS[i]) :].tolist())
        with ml.Engine(m, max_batch_size=4, lora_dtype=lora_dtype) as engine:
            assert {i.dtype for i in engine._runs.lora_inputs} == {"float32" if lora_dtype == "auto" else lora_dtype}
            got = engine.generate(PROMPTS, params)
        assert got == want
        assert want[0] != want[2]
