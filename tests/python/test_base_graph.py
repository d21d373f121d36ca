"""The base graph: ``multilora prepare-batching`` also writes ``<name>.base.onnx`` (the graph without the LoRA
branch, over the same external data file), and a model opens it as a second session for runs in which no row
has an adapter.

References, independent of the base graph: the same prepared model opened with ``base_graph=False`` (one
session; its LoRA graph computes the base output through the empty LoRA branch), onnxruntime's own session on
the *unprepared* model with no LoRA inputs fed, numpy's float64 forward (multilora.testing), and generation on
the unprepared GenAI fixture folder with the same adapter switches.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import multilora as ml
from multilora import testing as T
from multilora.generation import Generator, GeneratorParams
from multilora.prepare_batching import BASE_GRAPH_METADATA_KEY, prepare_batching

from support import assert_error

FX = Path(__file__).parent / "fixtures" / "generation"
LORA = FX / "lora"
ADAPTER = {name: str(LORA / "adapters" / f"{name}.onnx_adapter") for name in ("a", "b")}
REF = json.loads((FX / "reference.json").read_text())
PROMPTS: List[List[int]] = REF["prompt_ids"]
KERNELS = ("fused", "gather")
ATOL = 1e-4


def _meta(model: onnx.ModelProto) -> Dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _external(model: onnx.ModelProto) -> Dict[str, Tuple[str, str, str]]:
    out = {}
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            e = {x.key: x.value for x in t.external_data}
            out[t.name] = (e["location"], e.get("offset", "0"), e.get("length", ""))
    return out


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> T.LoraModel:
    """Every projection adapted, hidden 64: weights large enough to go to the external data file."""
    path = tmp_path_factory.mktemp("bg_model") / "lora.onnx"
    return T.make_lora_model(path, layers=2, hidden=64, modules=T.ATTN_MODULES + T.MLP_MODULES, seed=5)


@pytest.fixture(scope="module")
def prepared(wide: T.LoraModel, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    out = {}
    for kernel in KERNELS:
        d = tmp_path_factory.mktemp(f"bg_{kernel}")
        prepare_batching(wide.path, d / "model.onnx", kernel=kernel)
        out[kernel] = d / "model.onnx"
    return out


# ---- the files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
def test_prepare_writes_the_base_graph_over_one_data_file(prepared, wide, kernel):
    path = prepared[kernel]
    assert sorted(os.listdir(path.parent)) == ["model.base.onnx", "model.onnx", "model.onnx.data"]
    lora = onnx.load(str(path), load_external_data=False)
    base = onnx.load(str(path.parent / "model.base.onnx"), load_external_data=False)
    assert _meta(lora)[BASE_GRAPH_METADATA_KEY] == "model.base.onnx"
    assert BASE_GRAPH_METADATA_KEY not in _meta(base)
    # The base graph: the unprepared model's regular inputs and outputs, no LoRA input, no LoRA node.
    src = onnx.load(str(wide.path))
    lora_names = {n for p in wide.pairs for n in (p.a_name, p.b_name)}
    assert [i.name for i in base.graph.input] == [i.name for i in src.graph.input if i.name not in lora_names]
    assert [o.name for o in base.graph.output] == [o.name for o in src.graph.output]
    assert not any(n.domain == "com.multilora" or "lora" in n.name for n in base.graph.node)
    assert len(base.graph.node) == len(src.graph.node) - 3 * len(wide.pairs)  # each pair's 2 MatMuls + Add
    # Both read every weight from the same bytes of the one data file.
    ext_lora, ext_base = _external(lora), _external(base)
    assert ext_base and set(ext_base) <= set(ext_lora)
    assert all(ext_base[k] == ext_lora[k] for k in ext_base)
    assert {v[0] for v in ext_lora.values()} == {"model.onnx.data"}
    weights = {t.name for t in src.graph.initializer if t.name not in lora_names and t.ByteSize() > 2048}
    assert weights <= set(ext_base)
    # The weights are the unprepared model's, unchanged.
    full = onnx.load(str(path.parent / "model.base.onnx"))
    got = {t.name: onnx.numpy_helper.to_array(t) for t in full.graph.initializer}
    for t in src.graph.initializer:
        if t.name in got:
            np.testing.assert_array_equal(got[t.name], onnx.numpy_helper.to_array(t))


def test_no_base_graph(wide, tmp_path):
    prepare_batching(wide.path, tmp_path / "m.onnx", base_graph=False)
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]
    assert BASE_GRAPH_METADATA_KEY not in _meta(onnx.load(str(tmp_path / "m.onnx")))
    with ml.Model(tmp_path / "m.onnx") as m:
        m.run(None, {"input_ids": T.make_input_ids(wide)})
        assert m.session_runs == (1, 0)


def test_cli_no_base_graph_flag(wide, tmp_path):
    exe = [sys.executable, "-m", "multilora", "prepare-batching"]
    subprocess.run(exe + [str(wide.path), str(tmp_path / "a.onnx")], check=True, capture_output=True)
    subprocess.run(exe + [str(wide.path), str(tmp_path / "b.onnx"), "--no-base-graph"], check=True, capture_output=True)
    assert sorted(os.listdir(tmp_path)) == ["a.base.onnx", "a.onnx", "a.onnx.data", "b.onnx"]


def test_a_pair_not_added_by_one_add_is_refused(tmp_path):
    """The LoRA output feeding anything but one Add: no base graph can be derived (ValueError naming the flag);
    with --no-base-graph the model prepares as before."""
    info = T.make_lora_model(tmp_path / "m.onnx", layers=1, hidden=16, modules=("q_proj",), seed=1)
    m = onnx.load(str(info.path))
    add = next(n for n in m.graph.node if n.op_type == "Add" and n.name.endswith("lora/Add"))
    add.op_type = "Sub"
    onnx.save(m, str(tmp_path / "sub.onnx"))
    with pytest.raises(ValueError, match="--no-base-graph"):
        prepare_batching(tmp_path / "sub.onnx", tmp_path / "out.onnx")
    prepare_batching(tmp_path / "sub.onnx", tmp_path / "out.onnx", base_graph=False)


# ---- runs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
def test_base_runs_equal_the_lora_graphs_base_output_exactly(prepared, wide, kernel):
    path = prepared[kernel]
    ids = T.make_input_ids(wide, batch=3, seq=6, seed=2)
    with ml.Model(path) as two, ml.Model(path, base_graph=False) as one:
        reg2 = ml.Adapters(two)
        (want,) = one.run(None, {"input_ids": ids})
        assert one.session_runs == (1, 0)
        (got,) = two.run(None, {"input_ids": ids})
        assert two.session_runs == (0, 1)
        np.testing.assert_array_equal(got, want)  # bit for bit
        # Independent: ORT on the unprepared model with no LoRA inputs, and numpy in float64.
        (ort_out,) = ort.InferenceSession(str(wide.path)).run(None, {"input_ids": ids})
        np.testing.assert_allclose(got, ort_out, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got, T.reference_forward(wide, ids), rtol=1e-4, atol=1e-4)
        # Run options: cleared, and per-row with every row empty, go to the base graph too.
        with ml.RunOptions() as ro:
            (a,) = two.run(None, {"input_ids": ids}, ro)
            ro.set_active_adapters_per_row(reg2, [[], [], []])
            (b,) = two.run(None, {"input_ids": ids}, ro)
        np.testing.assert_array_equal(a, want)
        np.testing.assert_array_equal(b, want)
        assert two.session_runs == (0, 3)
        reg2.close()


@pytest.mark.parametrize("kernel", KERNELS)
def test_runs_with_an_adapter_go_to_the_lora_graph(prepared, wide, kernel, tmp_path):
    path = prepared[kernel]
    ids = T.make_input_ids(wide, batch=2, seq=5, seed=3)
    params = T.make_adapter_params(wide, rank=4, seed=11)
    T.write_ort_adapter(tmp_path / "x.onnx_adapter", params)
    with ml.Model(path) as model, ml.Adapters(model) as reg:
        reg.load(str(tmp_path / "x.onnx_adapter"), "x")
        with ml.RunOptions() as ro:
            ro.set_active_adapters_per_row(reg, [["x"], []])
            (mixed,) = model.run(None, {"input_ids": ids}, ro)
            assert model.session_runs == (1, 0)
            ro.set_active_adapters(reg, ["x"])
            (single,) = model.run(None, {"input_ids": ids}, ro)
            assert model.session_runs == (2, 0)
            ro.set_active_adapters(reg, [])  # cleared
            (cleared,) = model.run(None, {"input_ids": ids}, ro)
            assert model.session_runs == (2, 1)
    np.testing.assert_allclose(single, T.reference_forward(wide, ids, [(params, 1.0)]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mixed[0], single[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mixed[1], cleared[1], rtol=1e-5, atol=1e-5)
    assert not np.allclose(single, cleared, atol=1e-3)  # the adapter matters here


# ---- errors ---------------------------------------------------------------------------------------------


def _with_base_name(src: Path, dst: Path, name: str) -> None:
    m = onnx.load(str(src), load_external_data=False)
    for p in m.metadata_props:
        if p.key == BASE_GRAPH_METADATA_KEY:
            p.value = name
    onnx.save(m, str(dst))


def test_a_missing_base_graph_is_not_found_unless_disabled(prepared, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(prepared["fused"].parent, d)
    os.remove(d / "model.base.onnx")
    with pytest.raises(FileNotFoundError) as e:  # MultiloraFileNotFoundError, like every missing model file
        ml.Model(d / "model.onnx")
    assert isinstance(e.value, FileNotFoundError) and e.value.status_name == "MLORA_STATUS_NOT_FOUND"
    assert "model.base.onnx" in str(e.value) and "base_graph" in str(e.value)
    with ml.Model(d / "model.onnx", base_graph=False) as m:
        assert m.session_runs == (0, 0)


@pytest.mark.parametrize("name", ["../model.base.onnx", "/tmp/model.base.onnx"])
def test_a_base_graph_outside_the_folder_is_refused(prepared, tmp_path, name):
    d = tmp_path / "m"
    shutil.copytree(prepared["fused"].parent, d)
    _with_base_name(d / "model.onnx", d / "model.onnx", name)
    with pytest.raises(ml.FormatError) as e:
        ml.Model(d / "model.onnx")
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "multilora.base_graph")


def test_a_base_graph_with_other_outputs_is_refused(prepared, wide, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(prepared["gather"].parent, d)
    base = onnx.load(str(d / "model.base.onnx"), load_external_data=False)
    base.graph.output[0].name = base.graph.node[-1].output[0] = "renamed"
    onnx.save(base, str(d / "model.base.onnx"))
    with pytest.raises(ml.FormatError) as e:
        ml.Model(d / "model.onnx")
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "model.base.onnx", "outputs", "renamed")


def test_base_graph_option_is_validated():
    opts = ml.ModelOptions(base_graph=False)
    assert "base_graph=False" in repr(opts)


# ---- generation and the engine (the GenAI fixture) --------------------------------------------------------


@pytest.fixture(scope="module")
def gen_folders(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    out = {}
    for kernel in KERNELS:
        d = tmp_path_factory.mktemp(f"bg_gen_{kernel}") / "lora"
        shutil.copytree(LORA, d, ignore=shutil.ignore_patterns("model.onnx"))
        prepare_batching(LORA / "model.onnx", d / "model.onnx", kernel=kernel)
        out[kernel] = d
    return out


def _registry(model: ml.Model) -> ml.Adapters:
    reg = ml.Adapters(model)
    for name, path in ADAPTER.items():
        reg.load(path, name)
    return reg


Generated = Tuple[List[int], np.ndarray, Tuple[int, int]]


def _generate(folder: Path, schedule: Sequence[Sequence[str]], steps: int, **options: object) -> Generated:
    """Greedy generation of PROMPTS[0]; schedule[step % len(schedule)] = the set for that step (switched with
    Generator.set_active_adapters / clear_active_adapters before it)."""
    prompt = PROMPTS[0]
    with ml.Model(str(folder), **options) as model, _registry(model) as reg:
        with GeneratorParams(model) as params:
            params.set_search_options(max_length=len(prompt) + steps, min_length=len(prompt) + steps)
            with Generator(model, params) as gen:
                gen.append_tokens(np.asarray(prompt, dtype=np.int32))
                logits = []
                for step in range(steps):
                    names = list(schedule[step % len(schedule)])
                    if names:
                        gen.set_active_adapters(reg, names)
                    else:
                        gen.clear_active_adapters()
                    logits.append(gen.get_logits()[0].copy())
                    gen.generate_next_token()
                tokens = gen.get_sequence(0)[len(prompt) :].tolist()
        runs = model.session_runs
    return tokens, np.stack(logits), (runs.lora, runs.base)


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_generator_alternating_set_and_cleared_every_step(gen_folders, kernel):
    """The KV cache written by one graph is read by the other: every step switches sessions. Reference: the
    unprepared folder (one session) with the same switches."""
    schedule = [["a"], []]
    steps = 8
    tokens, logits, runs = _generate(gen_folders[kernel], schedule, steps)
    ref_tokens, ref_logits, ref_runs = _generate(LORA, schedule, steps)
    # Both graphs ran, in as many passes as the one-session reference made.
    assert runs[0] >= steps // 2 - 1 and runs[1] >= steps // 2 - 1
    assert sum(runs) == ref_runs[0] and ref_runs[1] == 0
    assert tokens == ref_tokens
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=ATOL)
    # The switches matter: the set alone and no set give other tokens.
    assert _generate(LORA, [["a"]], steps)[0] != tokens and _generate(LORA, [[]], steps)[0] != tokens


def test_packed_qkv_makes_the_builders_base_graph(gen_folders):
    """The fused prepared copy of the fp32 GenAI fixture: each attention's q/k/v MatMul packed into one (the
    builder's qkv_proj) with the three pairs' ops chained over it at column offsets 0, 32, 48; its base graph
    has the builder's base model's nodes and qkv weights (bytes), and plain ONNX Runtime gives the two the
    same logits bit for bit. (The gather kernel keeps the split projections.)"""
    folder = gen_folders["fused"]
    lora = onnx.load(str(folder / "model.onnx"))
    base = onnx.load(str(folder / "model.base.onnx"))
    builder = onnx.load(str(FX / "base" / "model.onnx"))
    for layer in range(2):
        packed = [n for n in lora.graph.node if n.op_type == "MatMul" and f"layers.{layer}/attn/qkv_proj/" in n.name]
        assert len(packed) == 1
        offsets, cur = [], packed[0].output[0]
        for n in lora.graph.node:
            if n.op_type == "LoraSlotMatMul" and n.input[5] == cur:
                offsets.append(next(a.i for a in n.attribute if a.name == "column_offset"))
                cur = n.output[0]
        assert offsets == [0, 32, 48]
    assert not any("attn/q_proj/MatMul" in n.name for n in lora.graph.node)
    gathered = onnx.load(str(gen_folders["gather"] / "model.onnx"))
    assert any("attn/q_proj/MatMul" in n.name for n in gathered.graph.node)
    assert sorted((n.op_type, n.domain) for n in base.graph.node) == sorted(
        (n.op_type, n.domain) for n in builder.graph.node
    )
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in base.graph.initializer}
    for t in builder.graph.initializer:
        if "qkv_proj" in t.name:
            np.testing.assert_array_equal(weights[t.name], onnx.numpy_helper.to_array(t))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    ours = ort.InferenceSession(str(folder / "model.base.onnx"), so)
    theirs = ort.InferenceSession(str(FX / "base" / "model.onnx"), so)
    for prompt in PROMPTS:
        ids = np.asarray([prompt], np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        for i in theirs.get_inputs():
            if i.name.startswith("past_key_values"):
                feeds[i.name] = np.zeros((1, 1, 0, 16), np.float32)
        np.testing.assert_array_equal(ours.run(["logits"], feeds)[0], theirs.run(["logits"], feeds)[0])


def _without_k_lora(src: Path, dst: Path) -> Dict[str, str]:
    """The fp32 fixture folder with the k_proj LoRA pairs taken out (LoRA on q and v only: PEFT's default
    target modules): GroupQueryAttention reads k straight from its MatMul. Returns the adapters rewritten
    without k's tensors."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.onnx", "adapters"))
    m = onnx.load(str(src / "model.onnx"))
    g = m.graph
    drop = {n.name for n in g.node if "/attn/k_proj/lora" in n.name}
    for n in g.node:
        if n.op_type == "GroupQueryAttention":
            n.input[1] = n.input[1].replace("/k_proj/lora/Add/output_0", "/k_proj/MatMul/output_0")
    nodes = [n for n in g.node if n.name not in drop]
    del g.node[:]
    g.node.extend(nodes)
    for field in (g.input, g.initializer):
        keep = [x for x in field if ".k_proj.lora_" not in x.name]
        del field[:]
        field.extend(keep)
    onnx.save(m, str(dst / "model.onnx"))
    files = {}
    (dst / "adapters").mkdir()
    for name, path in ADAPTER.items():
        params = {k: v for k, v in ml.read_adapter(path).parameters.items() if ".k_proj." not in k}
        files[name] = str(dst / "adapters" / f"{name}.onnx_adapter")
        T.write_ort_adapter(files[name], params)
    return files


def test_packed_qkv_with_lora_on_q_and_v_only(tmp_path):
    """k has no LoRA pair: the packed projection feeds q's op (offset 0), then v's (offset 48), and k's columns
    stay the projection's. Per-row rows equal the unprepared model with each row's adapter alone, and the base
    graph is the builder's base (logits bit for bit)."""
    files = _without_k_lora(LORA, tmp_path / "qv")
    prepare_batching(tmp_path / "qv", tmp_path / "prep", kernel="fused")
    lora = onnx.load(str(tmp_path / "prep" / "model.onnx"))
    offsets = [
        next(a.i for a in n.attribute if a.name == "column_offset")
        for n in lora.graph.node
        if n.op_type == "LoraSlotMatMul" and "layers.0" in n.name and "attn" in n.name and "o_proj" not in n.name
    ]
    assert offsets == [0, 48]
    assert sum(n.op_type == "MatMul" and "qkv_proj" in n.name for n in lora.graph.node) == 2
    rows = [["a"], [], ["b"], ["a", "b"]]
    prompt = PROMPTS[0]
    ids = np.asarray([prompt] * len(rows), np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    for layer in range(2):
        for k in ("key", "value"):
            feeds[f"past_key_values.{layer}.{k}"] = np.zeros((len(rows), 1, 0, 16), np.float32)
    with ml.Model(str(tmp_path / "prep")) as pm, ml.Adapters(pm) as reg:
        for name, f in files.items():
            reg.load(f, name)
        opts = ml.RunOptions()
        opts.set_active_adapters_per_row(reg, rows)
        (got,) = pm.run(["logits"], feeds, opts)
    with ml.Model(str(tmp_path / "qv")) as plain, ml.Adapters(plain) as reg:
        for name, f in files.items():
            reg.load(f, name)
        one = {k: v[:1] for k, v in feeds.items()}
        for i, row in enumerate(rows):
            opts = ml.RunOptions()
            if row:
                opts.set_active_adapters(reg, row)
            (want,) = plain.run(["logits"], one, opts)
            np.testing.assert_allclose(got[i : i + 1], want, rtol=0, atol=ATOL)
        (cleared,) = plain.run(["logits"], one)
    assert np.abs(got[0] - cleared[0]).max() > 10 * ATOL  # the adapter matters here
    so = ort.SessionOptions()
    so.log_severity_level = 3
    ours = ort.InferenceSession(str(tmp_path / "prep" / "model.base.onnx"), so)
    theirs = ort.InferenceSession(str(FX / "base" / "model.onnx"), so)
    one = {k: v[:1] for k, v in feeds.items()}
    np.testing.assert_array_equal(ours.run(["logits"], one)[0], theirs.run(["logits"], one)[0])


def test_a_cleared_generator_equals_the_lora_graph_bit_for_bit(gen_folders):
    tokens, logits, runs = _generate(gen_folders["fused"], [[]], 6)
    ref_tokens, ref_logits, ref_runs = _generate(gen_folders["fused"], [[]], 6, base_graph=False)
    assert runs == (0, 6) and ref_runs == (6, 0)
    assert tokens == ref_tokens
    np.testing.assert_array_equal(logits, ref_logits)
    ref = REF["torch"]["base"][0]  # PyTorch's greedy ids up to eos (held back here by min_length)
    assert tokens[: len(ref) - 1] == ref[: len(ref) - 1]


def test_engine_steps_without_adapters_run_the_base_graph(gen_folders):
    folder = gen_folders["fused"]
    prompt = PROMPTS[1]
    search = dict(max_length=len(prompt) + 6)
    got = {}
    for use in (True, False):
        with ml.Model(str(folder), base_graph=use) as model, _registry(model) as reg:
            with ml.Engine(model, max_batch_size=2, worker=False) as engine:
                p_base = ml.GeneratorParams(model)
                p_base.set_search_options(**search)
                p_a = ml.GeneratorParams(model)
                p_a.set_search_options(**search)
                p_a.set_active_adapters(reg, ["a"])
                r1 = engine.submit(p_base, prompt)
                while engine.step():
                    pass
                base_only = model.session_runs
                r2 = engine.submit(p_a, prompt)
                r3 = engine.submit(p_base, prompt)
                while engine.step():
                    pass
                got[use] = (r1.tokens(), r2.tokens(), r3.tokens(), base_only, model.session_runs)
    t1, t2, t3, base_only, runs = got[True]
    assert (t1, t2, t3) == got[False][:3]
    assert t1 == t3 != t2
    assert base_only.lora == 0 and base_only.base > 0  # a lone base request never touches the LoRA graph
    assert runs.lora > 0  # the mixed batch did
    assert got[False][4].base == 0


# ---- threads --------------------------------------------------------------------------------------------


def test_global_threads_are_fixed_once_a_model_exists(wide):
    with ml.Model(wide.path):
        with pytest.raises(ml.InUseError) as e:
            ml.set_global_threads(1, False)
    assert_error(e, ml.InUseError, "MLORA_STATUS_IN_USE", "first model")


@pytest.mark.parametrize("threads,spin", [(-1, True), (1, False), (2, True)])
def test_each_thread_policy_computes_the_same(prepared, wide, tmp_path, threads, spin):
    """In a fresh process (the policy is fixed by the first model): the fused kernel's per-row output under
    each policy equals numpy's reference."""
    params = T.make_adapter_params(wide, rank=4, seed=11)
    T.write_ort_adapter(tmp_path / "x.onnx_adapter", params)
    ids = T.make_input_ids(wide, batch=2, seq=5, seed=3)
    np.save(tmp_path / "ids.npy", ids)
    code = f"""
import numpy as np, multilora as ml
ml.set_global_threads({threads}, {spin})
with ml.Model({str(prepared["fused"])!r}) as m, ml.Adapters(m) as reg, ml.RunOptions() as ro:
    reg.load({str(tmp_path / "x.onnx_adapter")!r}, "x")
    ro.set_active_adapters_per_row(reg, [["x"], []])
    (out,) = m.run(None, {{"input_ids": np.load({str(tmp_path / "ids.npy")!r})}}, ro)
    np.save({str(tmp_path / "out.npy")!r}, out)
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    out = np.load(tmp_path / "out.npy")
    np.testing.assert_allclose(out[0], T.reference_forward(wide, ids[:1], [(params, 1.0)])[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out[1], T.reference_forward(wide, ids[1:])[0], rtol=1e-4, atol=1e-4)


def test_global_threads_arguments_are_checked():
    with pytest.raises(ml.InvalidArgumentError) as e:  # checked before the IN_USE state
        ml.set_global_threads(-2, False)
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "intra_op_threads -2")


def test_a_process_whose_onnxruntime_environment_onnxruntime_genai_created_first(prepared, wide, tmp_path):
    """ONNX Runtime has one environment per process. When onnxruntime-genai (same libonnxruntime) creates it
    first, it has no global thread pool: multilora's sessions fall back to pools of their own instead of
    failing ("the env must be created with the CreateEnvWithGlobalThreadPools API"), both of the model's
    graphs, and compute the same numbers."""
    pytest.importorskip("onnxruntime_genai")
    params = T.make_adapter_params(wide, rank=4, seed=11)
    T.write_ort_adapter(tmp_path / "x.onnx_adapter", params)
    ids = T.make_input_ids(wide, batch=2, seq=5, seed=3)
    np.save(tmp_path / "ids.npy", ids)
    genai_folder = Path(__file__).resolve().parent / "fixtures" / "generation" / "base"
    code = f"""
import numpy as np, onnxruntime_genai as og
first = og.Model({str(genai_folder)!r})  # creates the process's ONNX Runtime environment
import multilora as ml
with ml.Model({str(prepared["fused"])!r}) as m, ml.Adapters(m) as reg, ml.RunOptions() as ro:
    reg.load({str(tmp_path / "x.onnx_adapter")!r}, "x")
    ro.set_active_adapters_per_row(reg, [["x"], []])
    (out,) = m.run(None, {{"input_ids": np.load({str(tmp_path / "ids.npy")!r})}}, ro)
    (base,) = m.run(None, {{"input_ids": np.load({str(tmp_path / "ids.npy")!r})}})
    np.save({str(tmp_path / "out.npy")!r}, out)
    np.save({str(tmp_path / "base.npy")!r}, base)
    assert m.session_runs.base == 1, m.session_runs
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    out, base = np.load(tmp_path / "out.npy"), np.load(tmp_path / "base.npy")
    np.testing.assert_allclose(out[0], T.reference_forward(wide, ids[:1], [(params, 1.0)])[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out[1], T.reference_forward(wide, ids[1:])[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(base, T.reference_forward(wide, ids), rtol=1e-4, atol=1e-4)
