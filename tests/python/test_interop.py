"""Interop with the tools users come from (issue 16): onnxruntime-genai (og) semantics, Olive/PEFT adapter
names, ONNX Runtime's adapter format, GenAI folders through the CLI.

References: onnxruntime_genai 0.18 run live on the same folders, Hugging Face ``tokenizers`` decoding,
onnxruntime.AdapterFormat files, numpy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

import multilora as ml
from multilora.generation import Generator, GeneratorParams, Tokenizer, generate_stream

FX = Path(__file__).parent / "fixtures"
LORA = FX / "generation" / "lora"
BASE = FX / "generation" / "base"
ADAPTER = {name: str(LORA / "adapters" / f"{name}.onnx_adapter") for name in ("a", "b")}
REF = json.loads((FX / "generation" / "reference.json").read_text())
PROMPTS: List[List[int]] = REF["prompt_ids"]
NEW = REF["new_tokens"]
EOS = REF["eos_token_id"]
ATOL = 1e-4


# ---- 2. get_logits: the logits of the pending choice, as og.Generator.get_logits ---------------------


@pytest.mark.parametrize("label", ["base", "a", "b"])
@pytest.mark.parametrize("index", range(len(PROMPTS)))
def test_get_logits_matches_onnxruntime_genai_step_by_step(gmodel, gregistry, label, index):
    og = pytest.importorskip("onnxruntime_genai")
    prompt = PROMPTS[index]
    omodel = og.Model(str(LORA))
    oadapters = og.Adapters(omodel)
    oparams = og.GeneratorParams(omodel)
    oparams.set_search_options(max_length=len(prompt) + NEW, do_sample=False)
    ogen = og.Generator(omodel, oparams)
    with GeneratorParams(gmodel) as params:
        params.set_search_options(max_length=len(prompt) + NEW)
        if label != "base":
            oadapters.load(ADAPTER[label], label)
            ogen.set_active_adapter(oadapters, label)
            params.set_active_adapters(gregistry, [label])
        with Generator(gmodel, params) as gen:
            ogen.append_tokens(np.array([prompt], dtype=np.int32))
            gen.append_tokens(np.asarray(prompt, dtype=np.int32))
            steps = 0
            while True:
                # before every choice, including the first: the logits that choice is made from
                expected = np.array(ogen.get_logits()).reshape(1, -1)
                np.testing.assert_allclose(gen.get_logits(), expected, rtol=0, atol=ATOL, err_msg=f"step {steps}")
                # a second read runs nothing more
                np.testing.assert_allclose(gen.get_logits(), expected, rtol=0, atol=ATOL)
                ogen.generate_next_token()
                gen.generate_next_token()
                steps += 1
                assert int(gen.get_next_tokens()[0]) == int(ogen.get_next_tokens()[0])
                if ogen.is_done():  # og hangs when get_logits is called once it is done
                    break
                assert not gen.is_done()
            og_tokens = [int(t) for t in ogen.get_sequence(0)]
            tokens = gen.get_sequence(0).tolist()
    # og leaves a final eos out of its sequence; multilora keeps it
    assert (tokens[:-1] if tokens[-1] == EOS else tokens) == og_tokens
    assert steps >= 2  # at least one step after the first (og ends at eos)


def test_reading_logits_does_not_change_the_tokens(gmodel, gregistry):
    """Tokens with get_logits read at every step equal tokens without any read (the early pass is the pass
    generate_next_token would have run), and equal the recorded PyTorch + PEFT tokens."""
    prompt = PROMPTS[2]

    def run(read: bool) -> List[int]:
        with GeneratorParams(gmodel) as params:
            params.set_search_options(max_length=len(prompt) + NEW)
            params.set_active_adapters(gregistry, ["a"])
            with Generator(gmodel, params) as gen:
                gen.append_tokens(np.asarray(prompt, dtype=np.int32))
                while not gen.is_done():
                    if read:
                        gen.get_logits()
                    gen.generate_next_token()
                if read:
                    gen.get_logits()  # done: no pass, no error
                return gen.get_sequence(0)[len(prompt) :].tolist()

    assert run(True) == run(False) == REF["torch"]["a"][2]


# ---- 3. generate_stream flushes a trailing partial character ----------------------------------------


def _bytes_to_unicode() -> Dict[int, str]:
    """The byte -> printable character table of byte-level BPE (GPT-2's, a published fact)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def _byte_tokenizer(path: Path, byte_of_id: Dict[int, int]) -> Path:
    """A byte-level tokenizer.json whose token id i is the single byte byte_of_id[i]."""
    tokenizers = pytest.importorskip("tokenizers")
    table = _bytes_to_unicode()
    vocab = {table[b]: i for i, b in byte_of_id.items()}
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    return path / "tokenizer.json"


def test_tokenizer_stream_flushes_a_trailing_partial_character(tmp_path):
    # ids 0..9: "a".."j"; 10, 11: the two bytes of "é" (C3 A9); 12..14: the three bytes of "€" (E2 82 AC)
    byte_of_id = {i: ord("a") + i for i in range(10)}
    byte_of_id.update({10: 0xC3, 11: 0xA9, 12: 0xE2, 13: 0x82, 14: 0xAC})
    tok = Tokenizer(_byte_tokenizer(tmp_path / "t", byte_of_id))
    for ids in ([0, 1, 10, 11, 2, 10], [3, 12, 13, 14, 4, 12, 13], [12], [5, 10, 10, 11]):
        stream = tok.create_stream([0])
        pieces = [stream.decode(t) for t in ids]
        pieces.append(stream.flush())
        assert "".join(pieces) == tok.decode(ids), ids
        assert tok.decode(ids).endswith("\ufffd") == (ids[-1] in (10, 12, 13))


def test_generate_stream_ends_with_the_held_back_bytes(gmodel, gregistry, tmp_path):
    """The model's greedy continuation decoded with a byte-level tokenizer whose last generated token is
    the lead byte of a 2-byte character: the pieces must concatenate to Tokenizer.decode(new ids)."""
    prompt = PROMPTS[0]
    new = [t for t in REF["torch"]["a"][0] if t != EOS]
    last = new[-1]
    assert new.count(last) == 1
    byte_of_id = {i: 0x20 + i for i in range(96)}  # printable ASCII
    byte_of_id[last] = 0xC3  # ends inside "é"
    tok = Tokenizer(_byte_tokenizer(tmp_path / "t", byte_of_id))
    expected = tok.decode(new)
    assert expected.endswith("\ufffd")
    pieces = list(generate_stream(gmodel, prompt, ["a"], registry=gregistry, tokenizer=tok, max_new_tokens=len(new)))
    assert "".join(pieces) == expected


# ---- 4. prepare-batching takes a GenAI folder -------------------------------------------------------


def _alone(model: ml.Model, reg: ml.Adapters, prompt: List[int], names: List[str], max_length: int) -> List[int]:
    with GeneratorParams(model) as params:
        params.set_search_options(max_length=max_length)
        if names:
            params.set_active_adapters(reg, names)
        with Generator(model, params) as gen:
            gen.append_tokens(np.asarray(prompt, dtype=np.int32))
            while not gen.is_done():
                gen.generate_next_token()
            return gen.get_sequence(0).tolist()


@pytest.mark.parametrize("kernel", ["fused", "gather"])
def test_prepare_batching_a_genai_folder_with_external_data(tmp_path, kernel):
    onnx = pytest.importorskip("onnx")
    import shutil

    from multilora import cli

    # the builder + Olive fixture folder, with its decoder's weights moved to an external data file
    src = tmp_path / "src"
    shutil.copytree(LORA, src)
    proto = onnx.load(str(src / "model.onnx"))
    onnx.save(proto, str(src / "model.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (src / "weights.bin").stat().st_size > 50_000
    dst = tmp_path / "prepared"
    assert cli.main(["prepare-batching", str(src), str(dst), "--kernel", kernel]) == 0
    copied = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file())
    assert "genai_config.json" in copied and "tokenizer.json" in copied and "tokenizer_config.json" in copied
    assert "adapters/a.onnx_adapter" in copied and "model.onnx" in copied
    assert (dst / "genai_config.json").read_bytes() == (src / "genai_config.json").read_bytes()
    # the source folder can go: the prepared folder stands alone
    shutil.rmtree(src)
    rows = [["a"], [], ["b"], ["a", "b"]]
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[2], PROMPTS[0]]
    max_length = max(len(p) for p in prompts) + NEW
    with ml.Model(str(dst)) as model, ml.Adapters(model) as reg, ml.Model(str(LORA)) as plain:
        for name in ("a", "b"):
            reg.load(str(dst / "adapters" / f"{name}.onnx_adapter"), name)
        with GeneratorParams(model) as params:
            params.set_search_options(batch_size=len(rows), max_length=max_length)
            params.set_active_adapters_per_row(reg, rows)
            with Generator(model, params) as gen:
                gen.append_tokens(prompts)
                while not gen.is_done():
                    gen.generate_next_token()
                sequences = [gen.get_sequence(i).tolist() for i in range(len(rows))]
        with ml.Adapters(plain) as preg:
            for name, path in ADAPTER.items():
                preg.load(path, name)
            for i, (row, prompt) in enumerate(zip(rows, prompts)):
                assert sequences[i] == _alone(plain, preg, prompt, row, max_length), f"row {i} {row}"
    label = {("a",): "a", (): "base", ("b",): "b", ("a", "b"): "a+b"}
    for i, (row, p) in enumerate(zip(rows, [0, 1, 2, 0])):
        ref = REF["torch"][label[tuple(row)]][p]
        assert sequences[i][len(PROMPTS[p]) :][: len(ref)] == ref


def test_prepare_batching_folder_errors(tmp_path):
    pytest.importorskip("onnx")
    from multilora.prepare_batching import prepare_batching

    with pytest.raises(ValueError, match="genai_config.json"):
        prepare_batching(tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="must differ"):
        prepare_batching(LORA, LORA)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValueError, match="new or empty"):
        prepare_batching(LORA, tmp_path / "full")
    # the base folder has no LoRA pair: refused, and nothing is left behind
    with pytest.raises(ValueError, match="LoRA"):
        prepare_batching(BASE, tmp_path / "nolora")
    assert not (tmp_path / "nolora").exists()


# ---- 5. PEFT target_modules / exclude_modules ---------------------------------------------------------


def _peft_variant(tmp_path: Path, **config: object) -> Path:
    import shutil

    d = tmp_path / "peft"
    shutil.copytree(FX / "peft" / "llama_a", d)
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg.update(config)
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    return d


@pytest.mark.parametrize(
    "config, module, setting",
    [
        # PEFT's list form: exact name or a suffix after a dot; up_proj is left out
        (
            {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj"]},
            "model.layers.0.mlp.up_proj",
            "target_modules",
        ),
        # the regex form (full match) selecting attention projections only
        ({"target_modules": r".*\.self_attn\.(q|k|v|o)_proj"}, "model.layers.1.mlp.gate_proj", "target_modules"),
        ({"exclude_modules": ["down_proj"]}, "model.layers.0.mlp.down_proj", "exclude_modules"),
    ],
)
def test_peft_modules_left_out_by_the_config_are_refused(tmp_path, config, module, setting):
    folder = _peft_variant(tmp_path, **config)
    with ml.Model(str(LORA)) as m, ml.Adapters(m) as reg:
        with pytest.raises(ml.FormatError) as e:
            reg.load(str(folder), "a")
    msg = str(e.value)
    assert f"module '{module}'" in msg and setting in msg, msg
    listed = config[setting]
    for entry in listed if isinstance(listed, list) else [listed]:
        assert json.dumps(entry)[1:-1] in msg, msg


@pytest.mark.parametrize(
    "config",
    [
        {"target_modules": r"model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj"},
        {"target_modules": "all-linear"},
        {"target_modules": ["proj", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
    ],
)
def test_peft_modules_all_selected_load_like_the_committed_folder(tmp_path, config):
    folder = _peft_variant(tmp_path, **config)
    with ml.Model(str(LORA)) as m, ml.Adapters(m) as reg:
        reg.load(str(folder), "v")
        reg.load(str(FX / "peft" / "llama_a"), "a")
        ours, ref = reg.get("v").parameters, reg.get("a").parameters
        assert set(ours) == set(ref)
        for name in ref:
            np.testing.assert_array_equal(ours[name], ref[name])


# ---- 8. model_version: ONNX Runtime's producer number vs multilora's fingerprint ------------------------


def _two_params_lora_model(path: Path, model_version: int = 0) -> np.ndarray:
    """ONNX Runtime's test model two_params_lora_model rebuilt from its published facts: input input_x [4, 4],
    LoRA params lora_param_a [4, dim] / lora_param_b [dim, 4] (empty defaults); output = x W + (x A) B.
    Returns W."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.arange(1, 17, dtype=np.float32).reshape(4, 4) / 16
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input_x", "weight_x"], ["xw"]),
            helper.make_node("MatMul", ["input_x", "lora_param_a"], ["xa"]),
            helper.make_node("MatMul", ["xa", "lora_param_b"], ["xab"]),
            helper.make_node("Add", ["xw", "xab"], ["output"]),
        ],
        "two_params_lora_model",
        [
            helper.make_tensor_value_info("input_x", TensorProto.FLOAT, [4, 4]),
            helper.make_tensor_value_info("lora_param_a", TensorProto.FLOAT, [4, "dim"]),
            helper.make_tensor_value_info("lora_param_b", TensorProto.FLOAT, ["dim", 4]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [4, 4])],
        initializer=[
            numpy_helper.from_array(w, "weight_x"),
            numpy_helper.from_array(np.zeros((4, 0), np.float32), "lora_param_a"),
            numpy_helper.from_array(np.zeros((0, 4), np.float32), "lora_param_b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.model_version = model_version
    onnx.save(model, str(path))
    return w


def _ort_adapter(path: Path, params: Dict[str, np.ndarray], model_version: int, adapter_version: int = 1) -> None:
    ort = pytest.importorskip("onnxruntime")
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(adapter_version)
    fmt.set_model_version(model_version)
    fmt.set_parameters({n: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v)) for n, v in params.items()})
    fmt.export_adapter(str(path))


def _run(model: ml.Model, reg: ml.Adapters, name: str, feeds: Dict[str, np.ndarray], output: str) -> np.ndarray:
    with ml.RunOptions() as opts:
        opts.set_active_adapters(reg, [name])
        return model.run([output], feeds, opts)[0]


@pytest.mark.parametrize("model_version", [1, 7])
def test_ort_two_params_lora_model_with_producer_model_version(tmp_path, model_version):
    ort = pytest.importorskip("onnxruntime")
    w = _two_params_lora_model(tmp_path / "two.onnx")
    rng = np.random.default_rng(model_version)
    params = {
        "lora_param_a": rng.standard_normal((4, 2)).astype(np.float32),
        "lora_param_b": rng.standard_normal((2, 4)).astype(np.float32),
    }
    _ort_adapter(tmp_path / "two.onnx_adapter", params, model_version)
    x = rng.standard_normal((4, 4)).astype(np.float32)
    expected = x.astype(np.float64) @ w + (x.astype(np.float64) @ params["lora_param_a"]) @ params["lora_param_b"]
    # ONNX Runtime's own LoRA path agrees with numpy (the reference is right)
    session = ort.InferenceSession(str(tmp_path / "two.onnx"), providers=["CPUExecutionProvider"])
    adapter = ort.LoraAdapter()
    adapter.Load(str(tmp_path / "two.onnx_adapter"))
    ro = ort.RunOptions()
    ro.add_active_adapter(adapter)
    np.testing.assert_allclose(session.run(["output"], {"input_x": x}, ro)[0], expected, rtol=0, atol=1e-5)
    with ml.Model(str(tmp_path / "two.onnx")) as m, ml.Adapters(m) as reg:
        reg.load(str(tmp_path / "two.onnx_adapter"), "two")  # no VersionMismatchError
        with reg.get("two") as info:
            assert info.model_version == model_version
        got = _run(m, reg, "two", {"input_x": x}, "output")
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    # structural validation still catches a wrong adapter (A's fixed dim is not the model's 4)
    bad = dict(params, lora_param_a=rng.standard_normal((5, 2)).astype(np.float32))
    _ort_adapter(tmp_path / "bad.onnx_adapter", bad, model_version)
    with ml.Model(str(tmp_path / "two.onnx")) as m, ml.Adapters(m) as reg:
        with pytest.raises(ml.ShapeMismatchError, match="lora_param_a"):
            reg.load(str(tmp_path / "bad.onnx_adapter"), "bad")


@pytest.mark.parametrize("model_version", [1, 7])
def test_ort_written_adapters_with_producer_model_version_load(lora_model, params_sql, ids, tmp_path, model_version):
    from support import OrtBaseline

    path = tmp_path / "sql.onnx_adapter"
    _ort_adapter(path, params_sql, model_version)
    expected = OrtBaseline(lora_model.path).run(ids, str(path))
    with ml.Model(lora_model.path) as m, ml.Adapters(m) as reg:
        reg.load(str(path), "sql")
        np.testing.assert_allclose(_run(m, reg, "sql", {"input_ids": ids}, "logits"), expected, rtol=0, atol=1e-5)


def test_fingerprints_and_declared_versions_are_still_checked(lora_model, wide_model, params_sql, tmp_path):
    with ml.Model(lora_model.path) as m, ml.Model(wide_model.path) as other:
        assert m.version & 0x40000000 and other.version & 0x40000000 and m.version != other.version
        # an adapter recorded (by multilora) for another model
        path = tmp_path / "other.onnx_adapter"
        ml.write_adapter(path, params_sql, model_version=other.version)
        with ml.Adapters(m) as reg:
            with pytest.raises(ml.VersionMismatchError, match=str(other.version)):
                reg.load(str(path), "x")
            reg.load(str(path), "x", ignore_model_version=True)
        # written for this model: loads
        ml.write_adapter(tmp_path / "mine.onnx_adapter", params_sql, model=m)
        with ml.Adapters(m) as reg:
            reg.load(str(tmp_path / "mine.onnx_adapter"), "mine")
    # a model that declares ModelProto.model_version 3: producer numbers must equal it
    _two_params_lora_model(tmp_path / "v3.onnx", model_version=3)
    params = {"lora_param_a": np.ones((4, 2), np.float32), "lora_param_b": np.ones((2, 4), np.float32)}
    for mv, ok in ((3, True), (7, False), (0, True)):
        _ort_adapter(tmp_path / f"v{mv}.onnx_adapter", params, mv)
        with ml.Model(str(tmp_path / "v3.onnx")) as m, ml.Adapters(m) as reg:
            if ok:
                reg.load(str(tmp_path / f"v{mv}.onnx_adapter"), "v")
            else:
                with pytest.raises(ml.VersionMismatchError, match="declares model_version 3"):
                    reg.load(str(tmp_path / f"v{mv}.onnx_adapter"), "v")


# ---- 6. Model.run(fill_defaults=True) for a decoder fed only input_ids ------------------------------------


def test_run_fill_defaults_feeds_a_builder_decoder_like_its_first_pass(gmodel, gregistry):
    logits_ref = dict(np.load(FX / "generation" / "reference_logits.npz"))
    ids = np.asarray([PROMPTS[0]], dtype=np.int64)
    with pytest.raises(ml.MultiloraError, match="attention_mask|past_key_values"):
        gmodel.run(["logits"], {"input_ids": ids})
    with ml.RunOptions() as opts:
        opts.set_active_adapters(gregistry, ["a"])
        (logits,) = gmodel.run(["logits"], {"input_ids": ids}, opts, fill_defaults=True)
    assert logits.shape == (1, len(PROMPTS[0]), 96)
    # the last position's logits are those the first generated token is chosen from (PyTorch + PEFT)
    np.testing.assert_allclose(logits[0, -1], logits_ref["a/0"][0], rtol=0, atol=ATOL)
    # a batch of two prompts of the same length, base model; fed inputs are kept as given
    ids2 = np.asarray([PROMPTS[0], PROMPTS[0][::-1]], dtype=np.int64)
    mask = np.ones_like(ids2)
    (both,) = gmodel.run(["logits"], {"input_ids": ids2, "attention_mask": mask}, fill_defaults=True)
    np.testing.assert_allclose(both[0, -1], logits_ref["base/0"][0], rtol=0, atol=ATOL)


def test_run_fill_defaults_needs_2d_input_ids(gmodel):
    with pytest.raises(ValueError, match="2-D"):
        gmodel.run(["logits"], {"input_ids": np.asarray(PROMPTS[0], dtype=np.int64)}, fill_defaults=True)


# ---- 1. .onnx_adapter files with PEFT / olive convert-adapters names ----------------------------------------


def _olive_name(name: str, prefix: str = "", matmul: bool = False) -> str:
    """A builder graph name "model.layers.0.attn.q_proj.lora_A.MatMul.weight" as olive convert-adapters (from
    PEFT) spells it: "model.layers.0.self_attn.q_proj.lora_A.weight" (optionally under base_model.model.)."""
    out = name.replace(".attn.", ".self_attn.")
    if not matmul:
        out = out.replace(".MatMul.weight", ".weight")
    return prefix + out


@pytest.mark.parametrize("prefix, matmul", [("", False), ("base_model.model.", False), ("", True)])
@pytest.mark.parametrize("label", ["a", "b"])
def test_olive_spelled_adapter_generates_like_the_original(gmodel, gregistry, tmp_path, label, prefix, matmul):
    original = ml.read_adapter(ADAPTER[label])
    renamed = {_olive_name(n, prefix, matmul): v for n, v in original.parameters.items()}
    assert set(renamed) != set(original.parameters)
    path = tmp_path / "olive.onnx_adapter"
    ml.write_adapter(path, renamed, adapter_version=1)
    gregistry.load(str(path), "olive", replace=True)
    with gregistry.get("olive") as info:
        assert set(info.parameters) == set(original.parameters)  # resolved to the graph's names
    prompt = PROMPTS[1]
    results = []
    for name in (label, "olive"):
        with GeneratorParams(gmodel) as params:
            params.set_search_options(max_length=len(prompt) + NEW)
            params.set_active_adapters(gregistry, [name])
            with Generator(gmodel, params) as gen:
                gen.append_tokens(np.asarray(prompt, dtype=np.int32))
                logits = []
                while not gen.is_done():
                    logits.append(gen.get_logits().copy())
                    gen.generate_next_token()
                results.append((gen.get_sequence(0).tolist(), np.stack(logits)))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    gregistry.unload("olive")


def test_olive_spelled_float16_adapter_on_a_float16_model(tmp_path):
    """float16 (olive convert-adapters --dtype float16) on a float16 model: outputs equal the graph-named file's,
    and equal ONNX Runtime's own LoRA path on the graph-named file."""
    from multilora import testing as T

    from support import OrtBaseline

    lm = T.make_lora_model(tmp_path / "m16.onnx", modules=("q_proj", "v_proj", "up_proj"), dtype=np.float16, seed=3)
    params = {n: v.astype(np.float16) for n, v in T.make_adapter_params(lm, rank=4, seed=5).items()}
    T.write_ort_adapter(tmp_path / "graph.onnx_adapter", params)
    T.write_ort_adapter(tmp_path / "olive.onnx_adapter", {_olive_name(n): v for n, v in params.items()})
    ids = T.make_input_ids(lm, batch=2, seq=5, seed=9)
    expected = OrtBaseline(lm.path).run(ids, str(tmp_path / "graph.onnx_adapter"))
    with ml.Model(lm.path) as m, ml.Adapters(m) as reg:
        reg.load(str(tmp_path / "olive.onnx_adapter"), "olive")
        reg.load(str(tmp_path / "graph.onnx_adapter"), "graph")
        ours = _run(m, reg, "olive", {"input_ids": ids}, "logits")
        np.testing.assert_array_equal(ours, _run(m, reg, "graph", {"input_ids": ids}, "logits"))
        np.testing.assert_allclose(ours.astype(np.float32), expected.astype(np.float32), rtol=0, atol=1e-2)


def test_unmatched_and_ambiguous_names_stay_errors(gmodel, tmp_path):
    original = ml.read_adapter(ADAPTER["a"]).parameters
    name = next(n for n in original if ".layers.0.attn.q_proj.lora_A" in n)
    # unmatched: a layer the model does not have
    bad = dict(original)
    bad[_olive_name(name).replace("layers.0", "layers.9")] = bad.pop(name)
    ml.write_adapter(tmp_path / "unmatched.onnx_adapter", bad)
    # ambiguous: two spellings of the same input
    twice = dict(original)
    twice[_olive_name(name)] = original[name]
    ml.write_adapter(tmp_path / "twice.onnx_adapter", twice)
    # another prefix before the layer index (a file for another architecture) is not forgiven
    other = dict(original)
    other[_olive_name(name).replace("model.layers.", "transformer.h.")] = other.pop(name)
    ml.write_adapter(tmp_path / "prefix.onnx_adapter", other)
    with ml.Adapters(gmodel) as reg:
        with pytest.raises(ml.NotFoundError, match="layers.9.self_attn.q_proj.lora_A.weight"):
            reg.load(str(tmp_path / "unmatched.onnx_adapter"), "u")
        with pytest.raises(ml.NotFoundError, match="transformer.h.0.self_attn.q_proj.lora_A.weight"):
            reg.load(str(tmp_path / "prefix.onnx_adapter"), "p")
        with pytest.raises(ml.FormatError) as e:
            reg.load(str(tmp_path / "twice.onnx_adapter"), "t")
        assert name in str(e.value) and _olive_name(name) in str(e.value)


def test_check_and_convert_resolve_olive_names(gmodel, tmp_path, capsys):
    from multilora import cli

    original = ml.read_adapter(ADAPTER["b"])
    path = tmp_path / "olive.onnx_adapter"
    ml.write_adapter(path, {_olive_name(n): v for n, v in original.parameters.items()})
    assert cli.main(["check", "--model", str(LORA), str(path)]) == 0
    out = tmp_path / "graph.onnx_adapter"
    assert cli.main(["convert", str(path), "-o", str(out), "--model", str(LORA)]) == 0
    converted = ml.read_adapter(out)
    assert set(converted.parameters) == set(original.parameters)
    for n, v in original.parameters.items():
        np.testing.assert_array_equal(converted.parameters[n], v)
    # the converted file is what ONNX Runtime GenAI accepts
    og = pytest.importorskip("onnxruntime_genai")
    omodel = og.Model(str(LORA))
    oad = og.Adapters(omodel)
    oad.load(str(out), "b")


# ---- 7. Generator.rewind_to vs og.Generator.rewind_to ------------------------------------------------------


def _og_pair(gmodel, gregistry, folder: Path, label: str, max_length: int):
    og = pytest.importorskip("onnxruntime_genai")
    omodel = og.Model(str(folder))
    oparams = og.GeneratorParams(omodel)
    oparams.set_search_options(max_length=max_length, do_sample=False)
    ogen = og.Generator(omodel, oparams)
    params = GeneratorParams(gmodel)
    params.set_search_options(max_length=max_length)
    keep = [omodel]
    if label != "base":
        oadapters = og.Adapters(omodel)
        oadapters.load(ADAPTER[label], label)
        ogen.set_active_adapter(oadapters, label)
        keep.append(oadapters)
        params.set_active_adapters(gregistry, [label])
    return ogen, params, keep


def _steps(gen, ogen, n: int) -> None:
    for _ in range(n):
        np.testing.assert_allclose(gen.get_logits(), np.array(ogen.get_logits()).reshape(1, -1), rtol=0, atol=ATOL)
        gen.generate_next_token()
        ogen.generate_next_token()
        assert gen.get_sequence(0).tolist()[: len(ogen.get_sequence(0))] == [int(t) for t in ogen.get_sequence(0)]


@pytest.mark.parametrize("label", ["base", "a"])
def test_rewind_to_matches_onnxruntime_genai(gmodel, gregistry, label):
    """The fixture's builder model uses the shared KV buffer (past_present_share_buffer)."""
    prompt = PROMPTS[2]
    ogen, params, _keep = _og_pair(gmodel, gregistry, LORA, label, len(prompt) + 20)
    with params, Generator(gmodel, params) as gen:
        gen.append_tokens(np.asarray(prompt, dtype=np.int32))
        ogen.append_tokens(np.array([prompt], dtype=np.int32))
        _steps(gen, ogen, 4)
        # back into the generated part, then into the prompt; continue with new tokens each time
        for keep, more in ((len(prompt) + 2, [5, 9]), (len(prompt) - 3, [11, 4, 7])):
            gen.rewind_to(keep)
            ogen.rewind_to(keep)
            assert gen.get_sequence(0).tolist() == [int(t) for t in ogen.get_sequence(0)]
            gen.append_tokens(np.asarray(more, dtype=np.int32))
            ogen.append_tokens(np.array([more], dtype=np.int32))
            _steps(gen, ogen, 3)
        # rewinding then stepping directly: the last kept token is run first
        tokens_before = gen.get_sequence(0).tolist()[: len(prompt)]
        gen.rewind_to(len(prompt))
        gen.generate_next_token()
        with GeneratorParams(gmodel) as p2:
            p2.set_search_options(max_length=len(prompt) + 1)
            if label != "base":
                p2.set_active_adapters(gregistry, [label])
            with Generator(gmodel, p2) as fresh:
                fresh.append_tokens(np.asarray(tokens_before, dtype=np.int32))
                fresh.generate_next_token()
                assert gen.get_sequence(0).tolist() == fresh.get_sequence(0).tolist()
        # 0 starts over
        gen.rewind_to(0)
        gen.append_tokens(np.asarray(prompt, dtype=np.int32))
        assert gen.get_sequence(0).tolist() == prompt
        with pytest.raises(ml.InvalidArgumentError, match="has 9 tokens"):
            gen.rewind_to(len(prompt) + 5)


def test_rewind_to_with_a_growing_cache(gmodel, gregistry, tmp_path):
    """The same folder with past_present_share_buffer off: presents are fed back as pasts and rewinding
    slices them. Reference: a fresh generator given the kept tokens + the new ones as its prompt."""
    import shutil

    folder = tmp_path / "grow"
    shutil.copytree(LORA, folder)
    cfg = json.loads((folder / "genai_config.json").read_text())
    cfg["search"]["past_present_share_buffer"] = False
    (folder / "genai_config.json").write_text(json.dumps(cfg))
    prompt = PROMPTS[0]
    with ml.Model(str(folder)) as m, ml.Adapters(m) as reg:
        reg.load(ADAPTER["b"], "b")

        def fresh(tokens: List[int], steps: int):
            with GeneratorParams(m) as p:
                p.set_search_options(max_length=len(tokens) + steps)
                p.set_active_adapters(reg, ["b"])
                with Generator(m, p) as g:
                    g.append_tokens(np.asarray(tokens, dtype=np.int32))
                    logits = []
                    for _ in range(steps):
                        logits.append(g.get_logits().copy())
                        g.generate_next_token()
                    return g.get_sequence(0).tolist(), np.stack(logits)

        with GeneratorParams(m) as p:
            p.set_search_options(max_length=40)
            p.set_active_adapters(reg, ["b"])
            with Generator(m, p) as gen:
                gen.append_tokens(np.asarray(prompt, dtype=np.int32))
                for _ in range(5):
                    gen.generate_next_token()
                kept = gen.get_sequence(0).tolist()[: len(prompt) + 1]
                gen.rewind_to(len(prompt) + 1)
                gen.append_tokens(np.asarray([8, 13], dtype=np.int32))
                logits = []
                for _ in range(4):
                    logits.append(gen.get_logits().copy())
                    gen.generate_next_token()
                seq = gen.get_sequence(0).tolist()
        ref_seq, ref_logits = fresh(kept + [8, 13], 4)
        assert seq == ref_seq
        np.testing.assert_allclose(np.stack(logits), ref_logits, rtol=0, atol=ATOL)


OLIVE = FX / "olive"  # real `olive convert-adapters` output of fixtures/peft/llama_a (build_olive_fixture.sh)


def test_real_olive_convert_adapters_output_generates_like_pytorch_peft(gmodel, gregistry):
    """olive convert-adapters names ("model.layers.0.self_attn.q_proj.lora_A.weight") resolve to the builder
    graph's; greedy tokens and every step's logits equal PyTorch + PEFT's for adapter a (reference.json)."""
    names = ml.read_adapter(OLIVE / "a_float32.onnx_adapter").parameters
    assert any(".self_attn." in n and n.endswith("lora_A.weight") for n in names)
    assert not set(names) & {li.name for li in gmodel.lora_inputs}
    logits_ref = dict(np.load(FX / "generation" / "reference_logits.npz"))
    gregistry.load(str(OLIVE / "a_float32.onnx_adapter"), "olive_a", replace=True)
    try:
        for index, prompt in enumerate(PROMPTS):
            with GeneratorParams(gmodel) as params:
                params.set_search_options(max_length=len(prompt) + NEW)
                params.set_active_adapters(gregistry, ["olive_a"])
                with Generator(gmodel, params) as gen:
                    gen.append_tokens(np.asarray(prompt, dtype=np.int32))
                    logits = []
                    while not gen.is_done():
                        logits.append(gen.get_logits()[0].copy())
                        gen.generate_next_token()
                    tokens = gen.get_sequence(0)[len(prompt) :].tolist()
            assert tokens == REF["torch"]["a"][index]
            np.testing.assert_allclose(np.stack(logits), logits_ref[f"a/{index}"], rtol=0, atol=ATOL)
    finally:
        gregistry.unload("olive_a")


def test_real_olive_float16_output_resolves_and_converts(gmodel, tmp_path, capsys):
    """--dtype float16 output: names resolve (the model's LoRA inputs are float32, so load is a dtype error
    naming the resolved input, not an unknown name); convert writes the graph's names, values within fp16."""
    from multilora import cli

    with ml.Adapters(gmodel) as reg:
        with pytest.raises(ml.TypeMismatchError, match=r"\.MatMul\.weight' has dtype float16"):
            reg.load(str(OLIVE / "a_float16.onnx_adapter"), "x")
    assert cli.main(["check", "--model", str(LORA), str(OLIVE / "a_float16.onnx_adapter")]) == 1
    out = capsys.readouterr().out
    assert "float16" in out and "unknown" not in out
    fp32 = ml.read_adapter(OLIVE / "a_float32.onnx_adapter").parameters
    fp16 = ml.read_adapter(OLIVE / "a_float16.onnx_adapter").parameters
    assert set(fp16) == set(fp32)
    for n in fp32:
        assert fp16[n].dtype == np.float16
        np.testing.assert_allclose(fp16[n].astype(np.float32), fp32[n], rtol=1e-3, atol=1e-4)
    dst = tmp_path / "a.onnx_adapter"
    assert cli.main(["convert", str(OLIVE / "a_float32.onnx_adapter"), "-o", str(dst), "--model", str(LORA)]) == 0
    converted = ml.read_adapter(dst).parameters
    olive_generate_adapter = ml.read_adapter(ADAPTER["a"]).parameters  # the builder + olive generate-adapter file
    assert set(converted) == set(olive_generate_adapter)
    for n, v in olive_generate_adapter.items():
        np.testing.assert_allclose(converted[n], v, rtol=1e-5, atol=1e-6)


def test_olive_fixtures_stay_small():
    assert sum(p.stat().st_size for p in OLIVE.rglob("*") if p.is_file()) < 100_000


def test_rewind_to_on_a_model_with_position_ids_matches_numpy(tmp_path):
    """The classic layout (position_ids, real mask, growing cache) of test_generation.ClassicDecoder: after
    rewinding, every step's logits equal a full numpy recompute of the sequence so far."""
    pytest.importorskip("onnx")
    from test_generation import ClassicDecoder

    classic = ClassicDecoder(tmp_path / "classic")
    prompt = [5, 9, 14, 22, 7, 30]
    with ml.Model(str(classic.folder)) as m, GeneratorParams(m) as params:
        params.set_search_options(max_length=30, min_length=30)  # eos held back
        with Generator(m, params) as gen:
            gen.append_tokens(np.asarray(prompt, dtype=np.int32))
            for _ in range(6):
                gen.generate_next_token()
            for keep, more in ((len(prompt) + 3, [11, 4]), (3, [17, 8, 25]), (1, [3])):
                gen.rewind_to(keep)
                assert len(gen.get_sequence(0)) == keep
                gen.append_tokens(np.asarray(more, dtype=np.int32))
                for _ in range(4):
                    seq = gen.get_sequence(0).tolist()
                    np.testing.assert_allclose(gen.get_logits()[0], classic.logits(seq), rtol=0, atol=ATOL)
                    gen.generate_next_token()


def test_apply_chat_template_renders_the_folders_template(tmp_path):
    """Tokenizer.apply_chat_template renders the folder's template (tokenizer_config.json) with its special tokens,
    or a given one; the expected texts are written out by hand from the templates below."""
    pytest.importorskip("jinja2")
    src = Path(__file__).parent / "fixtures" / "generation" / "lora"
    shutil.copy(src / "tokenizer.json", tmp_path / "tokenizer.json")
    template = (
        "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": template, "bos_token": "<s>", "eos_token": {"content": "</s>"}})
    )
    tok = ml.Tokenizer(str(tmp_path))
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
    assert tok.apply_chat_template(msgs) == "<s><|system|>be brief</s>\n<|user|>hi there</s>\n<|assistant|>"
    assert (
        tok.apply_chat_template(msgs, add_generation_prompt=False)
        == "<s><|system|>be brief</s>\n<|user|>hi there</s>\n"
    )
    assert tok.apply_chat_template(msgs[1:], template_str="[{{ messages[0]['content'] | upper }}]") == "[HI THERE]"
    with pytest.raises(ValueError, match="refused"):
        tok.apply_chat_template(msgs, template_str="{{ raise_exception('no system role') }}")
    with pytest.raises(ValueError):  # the sandbox keeps templates away from Python internals
        tok.apply_chat_template(msgs, template_str="{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(ValueError, match="no chat template"):
        ml.Tokenizer(str(src)).apply_chat_template(msgs)
