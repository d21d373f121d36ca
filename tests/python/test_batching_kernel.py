"""The fused LoraSlotMatMul kernel's code paths (csrc/kernels/lora_slot_matmul.cpp): rank chunks of 16 held in
registers plus a tail, tokens four at a time plus a remainder, token blocks of 16 split over threads, and
slots written, evicted and rewritten at other ranks. Each row must equal the numpy reference of that row
alone (float64) and the same row run alone on the unprepared model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Dict, List, Tuple

import ml_dtypes
import numpy as np
import pytest

import multilora as ml
from multilora import testing as T
from multilora.prepare_batching import prepare_batching

from support import OrtBaseline, assert_close, assert_error, op_probe_model, open_with_adapters

TOL = 2e-5
# hidden 42: rows of A and outputs are not multiples of the vector width or of the unrolling. Ranks 16 (one
# chunk), 20 (chunk + tail 4), 37 (two chunks + tail 5), 3 (tail only); a mix of 16 and 20 composes to 36.
RANKS = {"r16": 16, "r20": 20, "r37": 37, "r3": 3}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("kernel")
    info = T.make_lora_model(d / "base.onnx", layers=1, hidden=42, modules=("q_proj", "up_proj", "down_proj"), seed=5)
    prepare_batching(info.path, d / "fused.onnx", kernel="fused")
    params = {n: T.make_adapter_params(info, rank=r, seed=40 + r) for n, r in RANKS.items()}
    files = {}
    for n, p in params.items():
        files[n] = str(d / f"{n}.onnx_adapter")
        T.write_ort_adapter(files[n], p)
    return info, str(d / "fused.onnx"), params, files


_open = open_with_adapters


def _check(out: np.ndarray, info, params, plain, ids: np.ndarray, rows: List[List[str]]) -> None:
    plain_model, plain_adapters = plain
    for i, row in enumerate(rows):
        ref = T.reference_forward(info, ids[i : i + 1], [(params[n], 1.0) for n in row])
        assert_close(out[i : i + 1], ref, rtol=TOL, atol=TOL)
        opts = ml.RunOptions()
        opts.set_active_adapters(plain_adapters, row)
        (alone,) = plain_model.run(["logits"], {"input_ids": ids[i : i + 1]}, opts)
        assert_close(out[i : i + 1], alone, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seq", [1, 3, 5, 17, 33])
def test_rank_chunks_and_token_blocks(setup, seq, threads):
    info, path, params, files = setup
    rows = [["r16"], ["r20"], [], ["r37"], ["r3"], ["r16", "r20"]]
    model, adapters = _open(path, files, intra_op_threads=threads)
    plain = _open(info.path, files)
    with model, adapters, plain[0], plain[1]:
        ids = T.make_input_ids(info, batch=len(rows), seq=seq, seed=seq)
        opts = ml.RunOptions()
        opts.set_active_adapters_per_row(adapters, rows)
        (out,) = model.run(["logits"], {"input_ids": ids}, opts)
        _check(out, info, params, plain, ids, rows)


def test_slots_rewritten_at_other_ranks(setup):
    """S = 3: two resident sets; each batch evicts and rewrites slots with sets of other ranks, and the
    table's storage grows from rank 3 to 37 on the way. Every result stays exact."""
    info, path, params, files = setup
    model, adapters = _open(path, files, batch_slots=3)
    plain = _open(info.path, files)
    with model, adapters, plain[0], plain[1]:
        ids = T.make_input_ids(info, batch=2, seq=4, seed=1)
        for rows in ([["r3"], []], [["r3"], ["r16"]], [["r20"], ["r37"]], [["r3"], ["r16"]], [["r37"], ["r3"]]):
            opts = ml.RunOptions()
            opts.set_active_adapters_per_row(adapters, rows)
            (out,) = model.run(["logits"], {"input_ids": ids}, opts)
            _check(out, info, params, plain, ids, rows)
            assert model.batch_slots[1] <= 2


# ---- 16-bit slots (prepare_batching(lora_dtype=...)) ----------------------------------------------------
# The kernel widens float16/bfloat16 slots to float32 in registers and accumulates in float32, so an adapter
# already in the slot dtype computes exactly what its file's values upcast to float32 compute: the references
# are the numpy model (float64) and ONNX Runtime's own LoRA path on the unprepared model, both fed those
# upcast values. A float32 adapter is rounded to the slot dtype once, to nearest even, when its set is built:
# it must then equal the same references fed numpy's rounding of its values (astype), and differ from the
# unrounded float32 result by a first-order bound: rounding A and B to relative error u each moves the LoRA
# term x·A·B by at most 2u (+u²) of |x|·|A|·|B|; with random signs that is ~2u of |x·A·B|, and the logits move
# by at most as much as the term moves them. We allow 4u times the largest logit change the adapter causes
# (u = 2^-11 float16, 2^-8 bfloat16), plus the float32 tolerance.
HALF = {"float16": (np.float16, 2.0**-11), "bfloat16": (ml_dtypes.bfloat16, 2.0**-8)}
HALF_ROWS = [["r16"], ["r20"], [], ["r37"], ["r3"], ["r16", "r20"]]


@pytest.fixture(scope="module")
def half_setup(setup, tmp_path_factory: pytest.TempPathFactory):
    """Per slot dtype: the model prepared with it, the adapters written in it, and those values upcast to
    float32 (written too, for ONNX Runtime's LoRA path on the unprepared model)."""
    info, _, params, files32 = setup
    d = tmp_path_factory.mktemp("half")
    out = {}
    for dt, (np_dt, _) in HALF.items():
        path = str(d / f"fused_{dt}.onnx")
        prepare_batching(info.path, path, kernel="fused", lora_dtype=dt)
        half = {n: {k: v.astype(np_dt) for k, v in p.items()} for n, p in params.items()}
        up = {n: {k: v.astype(np.float32) for k, v in p.items()} for n, p in half.items()}
        files, files_up = {}, {}
        for n in params:
            files[n] = str(d / f"{n}_{dt}.onnx_adapter")
            T.write_ort_adapter(files[n], half[n])
            files_up[n] = str(d / f"{n}_{dt}_up.onnx_adapter")
            T.write_ort_adapter(files_up[n], up[n])
        out[dt] = (path, files, up, files_up)
    return out


@pytest.mark.parametrize("dt", list(HALF))
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seq", [1, 5, 17])
def test_half_files_in_half_slots_equal_their_values_in_float32(setup, half_setup, dt, seq, threads):
    info, _, _, _ = setup
    path, files, up, files_up = half_setup[dt]
    model, adapters = _open(path, files, intra_op_threads=threads)
    base = OrtBaseline(info.path)
    with model, adapters:
        assert {i.dtype for i in model.lora_inputs} == {dt}
        ids = T.make_input_ids(info, batch=len(HALF_ROWS), seq=seq, seed=seq)
        opts = ml.RunOptions()
        opts.set_active_adapters_per_row(adapters, HALF_ROWS)
        (out,) = model.run(["logits"], {"input_ids": ids}, opts)
        for i, row in enumerate(HALF_ROWS):
            ref = T.reference_forward(info, ids[i : i + 1], [(up[n], 1.0) for n in row])
            assert_close(out[i : i + 1], ref, rtol=TOL, atol=TOL)
            if len(row) <= 1:  # ORT's LoRA path takes one adapter per name (no rank concatenation)
                theirs = base.run(ids[i : i + 1], files_up[row[0]] if row else None)
                assert_close(out[i : i + 1], theirs, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("dt", list(HALF))
def test_float32_files_in_half_slots_are_rounded_once(setup, half_setup, dt):
    info, _, params, files32 = setup
    path = half_setup[dt][0]
    np_dt, u = HALF[dt]
    model, adapters = _open(path, files32)
    with model, adapters:
        ids = T.make_input_ids(info, batch=len(HALF_ROWS), seq=6, seed=3)
        opts = ml.RunOptions()
        opts.set_active_adapters_per_row(adapters, HALF_ROWS)
        (out,) = model.run(["logits"], {"input_ids": ids}, opts)
        worst = 0.0
        for i, row in enumerate(HALF_ROWS):
            rounded = [({k: v.astype(np_dt).astype(np.float32) for k, v in params[n].items()}, 1.0) for n in row]
            assert_close(out[i : i + 1], T.reference_forward(info, ids[i : i + 1], rounded), rtol=TOL, atol=TOL)
            exact = T.reference_forward(info, ids[i : i + 1], [(params[n], 1.0) for n in row])
            moved = np.abs(exact - T.reference_forward(info, ids[i : i + 1])).max()
            err = np.abs(out[i : i + 1] - exact).max()
            assert err <= 4 * u * moved + TOL, (row, err, moved)
            if row:
                assert err > TOL, "rounding to 16 bits must show (else the slots were not 16-bit)"
                worst = max(worst, err / moved)
        assert worst > u / 16  # the bound is not vacuous by orders of magnitude


def test_half_slots_weighted_mix_and_single_set(setup, half_setup):
    """A weighted mix (B scaled by 0.5 and -1.25 then rounded to float16) and the single-set path (no slot
    table: the set's own float16 tensors) on a float16-slot model."""
    info, _, params, files32 = setup
    path, files, up, _ = half_setup["float16"]
    model, adapters = _open(path, files)
    with model, adapters:
        ids = T.make_input_ids(info, batch=2, seq=4, seed=9)
        opts = ml.RunOptions()
        opts.set_active_adapters(adapters, ["r16"])
        (out,) = model.run(["logits"], {"input_ids": ids}, opts)
        assert_close(out, T.reference_forward(info, ids, [(up["r16"], 1.0)]), rtol=TOL, atol=TOL)
        opts = ml.RunOptions()
        opts.set_active_adapters(adapters, ["r20", "r3"], [0.5, -1.25])
        (out,) = model.run(["logits"], {"input_ids": ids}, opts)
        scaled = {
            k: (v * 0.5).astype(np.float16).astype(np.float32) if "lora_B" in k else v for k, v in up["r20"].items()
        }
        scaled3 = {
            k: (v * -1.25).astype(np.float16).astype(np.float32) if "lora_B" in k else v for k, v in up["r3"].items()
        }
        assert_close(out, T.reference_forward(info, ids, [(scaled, 1.0), (scaled3, 1.0)]), rtol=TOL, atol=TOL)


def test_half_slot_model_keeps_the_signature_and_other_models_stay_strict(setup, half_setup, tmp_path):
    info, _, params, files32 = setup
    path, files, _, _ = half_setup["float16"]
    with ml.Model(info.path) as plain, ml.Model(path) as half:
        assert half.version == plain.version  # adapters made for the float32 model keep loading
        # A float16 file on the unprepared model and on a gather-prepared one: ONNX Runtime's strict dtype rule.
        gather = str(tmp_path / "gather.onnx")
        prepare_batching(info.path, gather, kernel="gather")
        for m in (plain, ml.Model(gather)):
            with ml.Adapters(m) as reg, pytest.raises(ml.TypeMismatchError) as e:
                reg.load(files["r16"], "x")
            assert_error(e, ml.TypeMismatchError, "MLORA_STATUS_TYPE_MISMATCH", files["r16"], "float16", "float32")
        # Other dtypes on the float16-slot model: named with the file, the tensor, what it expects and got.
        p64 = {k: v.astype(np.float64) for k, v in params["r3"].items()}
        f64 = str(tmp_path / "f64.onnx_adapter")
        T.write_ort_adapter(f64, p64)
        with ml.Adapters(half) as reg, pytest.raises(ml.TypeMismatchError) as e:
            reg.load(f64, "x")
        assert_error(
            e, ml.TypeMismatchError, "MLORA_STATUS_TYPE_MISMATCH", f64, "float64", "float32, float16 or bfloat16"
        )
        assert "parameter '" in str(e.value) and "slots are float16" in str(e.value), str(e.value)
        # A float32 value beyond float16's range: refused when the set is built, naming the parameter.
        big = {k: (v * 1e6 if "lora_B" in k else v) for k, v in params["r3"].items()}
        fbig = str(tmp_path / "big.onnx_adapter")
        T.write_ort_adapter(fbig, big)
        with ml.Adapters(half) as reg:
            reg.load(fbig, "big")
            with pytest.raises(ml.InvalidArgumentError) as e:
                opts = ml.RunOptions()
                opts.set_active_adapters_per_row(reg, [["big"]])
                half.run(["logits"], {"input_ids": T.make_input_ids(info, batch=1, seq=2)}, opts)
            assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "lora_B", "'big'", "float16")


def test_prepare_batching_lora_dtype_is_checked(setup, tmp_path):
    info = setup[0]
    with pytest.raises(ValueError, match="unknown lora_dtype 'float8'"):
        prepare_batching(info.path, tmp_path / "x.onnx", lora_dtype="float8")
    with pytest.raises(ValueError, match="needs --kernel fused"):
        prepare_batching(info.path, tmp_path / "y.onnx", kernel="gather", lora_dtype="float16")
    prepare_batching(info.path, tmp_path / "z.onnx", kernel="gather", lora_dtype="float32")  # the model's own


def test_generation_fixture_tokens_with_float16_adapters(tmp_path):
    """The builder + Olive fixture (a real GenAI model, attention with a KV cache) prepared with float16 slots,
    its adapters converted to float16 files: per-row generation gives each sequence the tokens and logits of
    that sequence generated alone on the unprepared folder with the float16 values upcast to float32."""
    from multilora.generation import Generator, GeneratorParams

    fx = Path(__file__).parent / "fixtures" / "generation"
    ref = json.loads((fx / "reference.json").read_text())
    prepared = tmp_path / "half"
    shutil.copytree(fx / "lora", prepared, ignore=shutil.ignore_patterns("model.onnx"))
    prepare_batching(fx / "lora" / "model.onnx", prepared / "model.onnx", lora_dtype="float16")
    half, up = {}, {}
    for n in ("a", "b"):
        values = ml.read_adapter(str(fx / "lora" / "adapters" / f"{n}.onnx_adapter")).parameters
        half[n], up[n] = str(tmp_path / f"{n}16.onnx_adapter"), str(tmp_path / f"{n}up.onnx_adapter")
        T.write_ort_adapter(half[n], {k: np.asarray(v).astype(np.float16) for k, v in values.items()})
        T.write_ort_adapter(up[n], {k: np.asarray(v).astype(np.float16).astype(np.float32) for k, v in values.items()})
    rows = [["a"], [], ["b"], ["a", "b"]]
    prompts = [ref["prompt_ids"][p] for p in (0, 1, 2, 0)]
    max_length = max(map(len, prompts)) + ref["new_tokens"]

    def generate(folder: Path, files: Dict[str, str], sets: List[List[str]], batch_prompts) -> Tuple[list, list]:
        with ml.Model(str(folder)) as model, ml.Adapters(model) as reg:
            for n, f in files.items():
                reg.load(f, n)
            with GeneratorParams(model) as params:
                params.set_search_options(batch_size=len(sets), max_length=max_length)
                if len(sets) > 1:
                    params.set_active_adapters_per_row(reg, sets)
                elif sets[0]:
                    params.set_active_adapters(reg, sets[0])
                with Generator(model, params) as gen:
                    gen.append_tokens(batch_prompts)
                    steps = []
                    while not gen.is_done():
                        steps.append(gen.get_logits().copy())
                        gen.generate_next_token()
                    return [gen.get_sequence(i).tolist() for i in range(len(sets))], steps

    seqs, steps = generate(prepared, half, rows, prompts)
    for i, (row, prompt) in enumerate(zip(rows, prompts)):
        (alone,), alone_steps = generate(fx / "lora", up, [row], [prompt])
        assert seqs[i][: len(alone)] == alone, row
        got = np.stack([s[i] for s in steps[: len(alone_steps)]])
        np.testing.assert_allclose(got, np.stack([s[0] for s in alone_steps]), rtol=0, atol=1e-4)


# ---- the base operand: the pair's Add taken into the op ------------------------------------------------
# prepare_batching folds each pair's Add(base, delta) into the op (input 5, ``base``); ONNX Runtime may run it
# in place of base. Three layouts of the same prepared model must give the same rows: the folded one (base read
# only by the op: in place allowed), one where every base operand is also a graph output (ONNX Runtime must
# keep base intact: the op copies it, then adds), and the five-input form with the Add back (what older
# prepared models hold). The kept base outputs must still equal x·W: the op never writes into a base it was
# not given in place.


def _variant(path: str, out: str, mode: str) -> List[str]:
    """Writes the folded model at ``path`` as ``mode`` ('expose': base operands also graph outputs; 'unfold':
    the Add back behind a five-input op); returns the exposed base names."""
    import onnx
    from onnx import helper

    m = onnx.load(path)
    g = m.graph
    exposed: List[str] = []
    nodes = []
    for n in g.node:
        if n.op_type != "LoraSlotMatMul":
            nodes.append(n)
            continue
        assert len(n.input) == 6 and n.input[5], n.name
        if mode == "expose":
            exposed.append(n.input[5])
            g.output.append(helper.make_tensor_value_info(n.input[5], onnx.TensorProto.FLOAT, None))
            nodes.append(n)
        else:
            base, y = n.input[5], n.output[0]
            del n.input[5]
            n.output[0] = y + "_delta"
            nodes += [n, helper.make_node("Add", [base, y + "_delta"], [y], name=n.name + "_add")]
    del g.node[:]
    g.node.extend(nodes)
    onnx.save(m, out)
    return exposed


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seq", [1, 5, 17])
def test_base_operand_in_place_copied_or_added_by_the_graph(setup, tmp_path, seq, threads):
    info, path, params, files = setup
    exposed = _variant(path, str(tmp_path / "expose.onnx"), "expose")
    _variant(path, str(tmp_path / "unfold.onnx"), "unfold")
    assert len(exposed) == len(info.pairs)
    rows = [["r16"], [], ["r37"], ["r3"], ["r16", "r20"], []]
    ids = T.make_input_ids(info, batch=len(rows), seq=seq, seed=7 + seq)
    plain = _open(info.path, files)
    outs = {}
    with plain[0], plain[1]:
        for name in ("folded", "expose", "unfold"):
            p = path if name == "folded" else str(tmp_path / f"{name}.onnx")
            model, adapters = _open(p, files, intra_op_threads=threads, base_graph=False)
            with model, adapters:
                opts = ml.RunOptions()
                opts.set_active_adapters_per_row(adapters, rows)
                names = ["logits"] + (exposed if name == "expose" else [])
                outs[name] = model.run(names, {"input_ids": ids}, opts)
                _check(outs[name][0], info, params, plain, ids, rows)
        # Folded in place or copied: the same arithmetic, bit for bit.
        np.testing.assert_array_equal(outs["folded"][0], outs["expose"][0])
        # The first pair's base operand (graph order: no LoRA term precedes it) is the same x·W with and
        # without adapters: the op did not write into the base it was given as a graph output.
        with ml.Model(str(tmp_path / "expose.onnx"), base_graph=False) as model:
            (cleared,) = model.run([exposed[0]], {"input_ids": ids})
        np.testing.assert_array_equal(outs["expose"][1], cleared)


def test_cleared_pairs_leave_the_base_output_bitwise(setup):
    """A run whose rows have no adapter (one session: base graph off) gives the base model's logits exactly:
    rank-0 rows add nothing, in place or not."""
    info, path, _, files = setup
    ids = T.make_input_ids(info, batch=3, seq=4, seed=3)
    with ml.Model(info.path) as plain, ml.Model(path, base_graph=False) as fused:
        (want,) = plain.run(["logits"], {"input_ids": ids})
        (got,) = fused.run(["logits"], {"input_ids": ids})
        assert fused.session_runs.lora == 1 and fused.session_runs.base == 0
    np.testing.assert_array_equal(got, want)


def test_base_operand_of_the_wrong_shape_is_refused(setup, tmp_path):
    """A hand-edited model whose base operand is not [batch, seq, out]: the run fails with the op's
    INVALID_ARGUMENT (multilora keeps that status for our op's refusals) naming the node and both shapes."""
    import onnx

    info, path, _, files = setup
    m = onnx.load(path)
    node = next(n for n in m.graph.node if n.op_type == "LoraSlotMatMul" and "up_proj" in n.name)
    node.input[5] = node.input[0]  # x: [batch, seq, in], in != up_proj's out
    bad = str(tmp_path / "bad.onnx")
    onnx.save(m, bad)
    model, adapters = _open(bad, files, base_graph=False)
    with model, adapters, pytest.raises(ml.InvalidArgumentError) as e:
        opts = ml.RunOptions()
        opts.set_active_adapters_per_row(adapters, [["r16"], []])
        model.run(["logits"], {"input_ids": T.make_input_ids(info, batch=2, seq=3)}, opts)
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", node.name, "base is float32 [2, 3, 42]")
    assert "expected float32 [2, 3, " in str(e.value)


# Ranks whose chunk of columns is 8 wide (rank 8, PEFT's default), 8 + a scalar tail (12), 16 + 8 (24) and
# 16 + 8 + tail (29): the 8-column path of x·A for every token count (1 = decode, 3, 4 + 1).
@pytest.mark.parametrize("seq", [1, 3, 5])
def test_eight_column_rank_chunks(setup, tmp_path, seq):
    info, path, _, _ = setup
    ranks = {"q8": 8, "q12": 12, "q24": 24, "q29": 29}
    params = {n: T.make_adapter_params(info, rank=r, seed=60 + r) for n, r in ranks.items()}
    files = {}
    for n, p in params.items():
        files[n] = str(tmp_path / f"{n}.onnx_adapter")
        T.write_ort_adapter(files[n], p)
    rows = [["q8"], ["q12"], [], ["q24"], ["q29"], ["q8", "q29"], ["q8"]]
    model, adapters = _open(path, files, intra_op_threads=2)
    plain = _open(info.path, files)
    with model, adapters, plain[0], plain[1]:
        ids = T.make_input_ids(info, batch=len(rows), seq=seq, seed=20 + seq)
        opts = ml.RunOptions()
        opts.set_active_adapters_per_row(adapters, rows)
        (out,) = model.run(["logits"], {"input_ids": ids}, opts)
        _check(out, info, params, plain, ids, rows)


def _huge_advised_bytes() -> int:
    """Bytes of this process's mappings advised MADV_HUGEPAGE (VmFlags "hg" in /proc/self/smaps)."""
    total, size = 0, 0
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(" ", 1)[0]
            if "-" in head and ":" not in head:
                b, e = (int(x, 16) for x in head.split("-"))
                size = e - b
            elif line.startswith("VmFlags:") and "hg" in line.split()[1:]:
                total += size
    return total


@pytest.mark.skipif(not Path("/sys/kernel/mm/transparent_hugepage/enabled").exists(), reason="no THP in this kernel")
@pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="AddressSanitizer builds give each slot buffer its own heap block (redzones), not the mapping",
)
def test_a_large_slot_table_is_one_huge_page_mapping_released_with_the_model(tmp_path):
    """A slot table of several MiB is one mapping advised for huge pages (io/pages.h; the decode rows' TLB
    misses, docs/design.md §6): per-row results still equal the numpy reference, the advised bytes grow
    by at least the table's size while the model is open and fall back when it closes (nothing leaks)."""
    info = T.make_lora_model(tmp_path / "base.onnx", layers=1, hidden=256, modules=("q_proj", "v_proj"), seed=9)
    prepare_batching(info.path, tmp_path / "fused.onnx", kernel="fused")
    params = {f"a{i}": T.make_adapter_params(info, rank=64, seed=70 + i) for i in range(3)}
    files = {}
    for n, p in params.items():
        files[n] = str(tmp_path / f"{n}.onnx_adapter")
        T.write_ort_adapter(files[n], p)
    slots = 17
    # Four LoRA inputs (A and B of two pairs), each [slots, 256, 64] float32.
    table_bytes = 4 * slots * 256 * 64 * 4
    before = _huge_advised_bytes()
    model, adapters = _open(str(tmp_path / "fused.onnx"), files, batch_slots=slots)
    with model, adapters:
        rows = [["a0"], ["a1"], [], ["a2"], ["a0", "a1"]]
        ids = T.make_input_ids(info, batch=len(rows), seq=2, seed=3)
        opts = ml.RunOptions()
        opts.set_active_adapters_per_row(adapters, rows)
        (out,) = model.run(["logits"], {"input_ids": ids}, opts)
        for i, row in enumerate(rows):
            ref = T.reference_forward(info, ids[i : i + 1], [(params[n], 1.0) for n in row])
            assert_close(out[i : i + 1], ref, rtol=TOL, atol=TOL)
        during = _huge_advised_bytes()
        assert during - before >= table_bytes, (before, during, table_bytes)
    del out, opts
    import gc

    gc.collect()
    after = _huge_advised_bytes()
    assert after - before < table_bytes, (before, during, after)


# ---- column_offset: the op adding its term to a column range of a packed output ------------------------
# prepare-batching packs a GroupQueryAttention's q/k/v MatMulNBits into one (tests/python/test_int4.py checks
# the graphs); here the op alone, fed directly: y = base with columns [c, c + out) += x·A·B, the other columns
# base's bit for bit, in place (base an intermediate tensor) and copied (base a graph input) alike.

PACKED_NODE = "probe/LoraSlotMatMul"  # op_probe_model names its node so


def _packed_op_model(path: Path, column_offset, in_place: bool, with_base: bool = True) -> str:
    from onnx import TensorProto, helper

    names, extra, nodes, inits = ["x", "A", "B", "slot", "ranks"], [], [], []
    if with_base:
        extra.append(helper.make_tensor_value_info("base", TensorProto.FLOAT, ["b", "t", "w"]))
        names.append("base")
        if in_place:  # an intermediate tensor ONNX Runtime may hand the op to write in place (x·1 is exact)
            inits.append(helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]))
            nodes.append(helper.make_node("Mul", ["base", "one"], ["base1"], name="copy"))
            names[-1] = "base1"
    attrs = {} if column_offset is None else {"column_offset": column_offset}
    return op_probe_model(str(path), TensorProto.FLOAT, extra, names, nodes, inits, ["b", "t", "w"], **attrs)


def _packed_feeds(rng, batch, tokens, n_in, out, width, ranks):
    S, R = len(ranks), max(ranks)
    A = np.zeros((S, n_in, R), np.float32)
    B = np.zeros((S, R, out), np.float32)
    dense = []
    for s, r in enumerate(ranks):
        a = rng.standard_normal((n_in, r)).astype(np.float32)
        b = rng.standard_normal((r, out)).astype(np.float32)
        A[s].reshape(-1)[: n_in * r] = a.reshape(-1)  # packed [in, r], stride r
        B[s, :r] = b
        dense.append((a.astype(np.float64), b.astype(np.float64)))
    feeds = {
        "x": rng.standard_normal((batch, tokens, n_in)).astype(np.float32),
        "A": A,
        "B": B,
        "slot": (np.arange(batch) % S).astype(np.int64),
        "ranks": np.array([ranks], np.int64),
        "base": rng.standard_normal((batch, tokens, width)).astype(np.float32),
    }
    return feeds, dense


@pytest.mark.parametrize("tokens", [1, 3, 5])
@pytest.mark.parametrize("column", [0, 24, 41])
def test_op_adds_to_a_column_range_of_a_packed_base(tmp_path, tokens, column):
    """in 40, out 17 (a 1-output tail), packed width 64 (column 41: the range ends at the last column); slots of
    ranks 0, 3, 16, 20. The range gets x·A·B within the batching tests' tolerance; every other column is
    base's, bitwise; in place and copied equal bitwise."""
    rng = np.random.default_rng(10 * tokens + column)
    n_in, out, width, ranks = 40, 17, 64, [0, 3, 16, 20]
    feeds, dense = _packed_feeds(rng, 6, tokens, n_in, out, width, ranks)
    ys = []
    for in_place in (True, False):
        with ml.Model(_packed_op_model(tmp_path / f"p{in_place}.onnx", column, in_place)) as m:
            (y,) = m.run(["y"], feeds)
        ys.append(y)
        assert y.shape == (6, tokens, width)
        for row, s in enumerate(feeds["slot"]):
            want = feeds["base"][row].astype(np.float64)
            a, b = dense[s]
            want[:, column : column + out] += feeds["x"][row].astype(np.float64) @ a @ b
            assert_close(y[row], want, rtol=TOL, atol=TOL)
            outside = np.ones(width, bool)
            outside[column : column + out] = False
            np.testing.assert_array_equal(y[row][:, outside], feeds["base"][row][:, outside])
            if ranks[s] == 0:
                np.testing.assert_array_equal(y[row], feeds["base"][row])
    np.testing.assert_array_equal(ys[0], ys[1])


def test_op_column_offset_is_checked(tmp_path):
    """A base too narrow for column_offset + out, a column_offset without a base, a base wider than out
    without column_offset, a negative column_offset: refused, naming the node and what it expected."""
    rng = np.random.default_rng(0)
    feeds, _ = _packed_feeds(rng, 2, 2, 40, 17, 64, [4])
    with ml.Model(_packed_op_model(tmp_path / "narrow.onnx", 48, False)) as m:
        with pytest.raises(ml.InvalidArgumentError) as e:
            m.run(["y"], feeds)
    assert_error(
        e,
        ml.InvalidArgumentError,
        "MLORA_STATUS_INVALID_ARGUMENT",
        PACKED_NODE,
        "base is float32 [2, 2, 64]",
        "at least 65 wide for column_offset 48",
    )
    no_base = {k: v for k, v in feeds.items() if k != "base"}
    with ml.Model(_packed_op_model(tmp_path / "nobase.onnx", 8, False, with_base=False)) as m:
        with pytest.raises(ml.InvalidArgumentError) as e:
            m.run(["y"], no_base)
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", PACKED_NODE, "column_offset 8 needs")
    with ml.Model(_packed_op_model(tmp_path / "plain.onnx", None, False)) as m:
        with pytest.raises(ml.InvalidArgumentError) as e:
            m.run(["y"], feeds)
    assert_error(
        e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", PACKED_NODE, "expected float32 [2, 2, 17]"
    )
    with pytest.raises(ml.MultiloraError) as e:
        ml.Model(_packed_op_model(tmp_path / "neg.onnx", -1, False))
    assert "column_offset must not be negative" in str(e.value)
