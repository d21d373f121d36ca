"""PEFT LoRA folders: direct loading in the core, ``convert``, ``check``, model versions, ``prepare-model``.

References are independent of multilora's conversion: PEFT's own ``get_delta_weight`` (scale included) of
real PEFT outputs (fixtures/peft, made by fixtures/peft/build_peft_fixture.py with torch + transformers +
peft), the raw PEFT tensors read with a hand-written safetensors reader plus the PEFT scaling rules, the
``.onnx_adapter`` that onnxruntime-genai's model builder + Olive made from the same PEFT adapter, and
onnxruntime's own LoRA path running our converted files.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Dict

import numpy as np
import onnx
import pytest

import multilora as ml
from multilora import cli
from multilora import testing as T
from multilora.peft import check, read_safetensors, write_peft_folder, write_safetensors

from support import OrtBaseline, assert_close, assert_error

FX = Path(__file__).parent / "fixtures"
PEFT = FX / "peft"
LORA_GENAI = FX / "generation" / "lora"
TINY_MODULES = ("q_proj", "v_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> T.LoraModel:
    """Projection sizes of the tiny Llama the PEFT fixtures were trained for (hidden 16, intermediate 32)."""
    path = tmp_path_factory.mktemp("peft_model") / "tiny.onnx"
    return T.make_lora_model(
        path, layers=2, hidden=16, intermediate=32, modules=TINY_MODULES, seed=5, rank_dim="r_{layer}_{module}"
    )


@pytest.fixture
def tiny_model(tiny):
    with ml.Model(tiny.path) as m:
        yield m


@pytest.fixture
def tiny_adapters(tiny_model):
    with ml.Adapters(tiny_model) as a:
        yield a


def _ours(module: str) -> str:
    return module.replace("self_attn", "attn")


def _reference_deltas(folder: str) -> Dict[str, np.ndarray]:
    """{our module prefix: PEFT's delta weight [out, in]} from tiny_reference.npz."""
    ref = np.load(PEFT / "tiny_reference.npz")
    return {_ours(k.split("/", 1)[1]): ref[k] for k in ref.files if k.startswith(folder + "/")}


def _run(model, adapters, names, ids):
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, names)
    (out,) = model.run(["logits"], {"input_ids": ids}, opts)
    return out


# ---- direct loading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["tiny_qv", "tiny_rs"])
def test_folder_gives_peft_delta_weights(tiny_adapters, tiny_model, folder):
    tiny_adapters.load(str(PEFT / folder), folder)
    info = tiny_adapters.get(folder)
    params = info.parameters
    deltas = _reference_deltas(folder)
    assert len(params) == 2 * len(deltas) and deltas
    for module, delta in deltas.items():
        a = params[f"{module}.lora_A.MatMul.weight"]
        b = params[f"{module}.lora_B.MatMul.weight"]
        assert a.dtype == np.float32 and a.shape[0] == delta.shape[1] and b.shape[1] == delta.shape[0]
        assert_close(a.astype(np.float64) @ b.astype(np.float64), delta.T, rtol=1e-5, atol=1e-6)
    # owned, not mapped; made for this model
    assert info.bytes_mapped == 0 and info.bytes_copied >= sum(p.nbytes for p in info.params.values())
    assert info.model_version == tiny_model.version
    assert info.rank == (4 if folder == "tiny_qv" else 8)


def test_rank_and_alpha_patterns_and_rslora(tiny_adapters):
    """tiny_rs: rsLoRA r 8 alpha 16, v_proj rank 4 (rank_pattern), down_proj alpha 4 (alpha_pattern)."""
    cfg = json.loads((PEFT / "tiny_rs" / "adapter_config.json").read_text())
    assert cfg["use_rslora"] and cfg["rank_pattern"] == {"v_proj": 4} and cfg["alpha_pattern"] == {"down_proj": 4}
    raw = read_safetensors(PEFT / "tiny_rs" / "adapter_model.safetensors")
    tiny_adapters.load(str(PEFT / "tiny_rs"), "rs")
    params = tiny_adapters.get("rs").parameters
    for key, a_peft in raw.items():
        if ".lora_A." not in key:
            continue
        b_peft = raw[key.replace(".lora_A.", ".lora_B.")]
        module = _ours(key[len("base_model.model.") : key.index(".lora_A.")])
        r = 4 if "v_proj" in module else 8
        alpha = 4 if "down_proj" in module else 16
        assert a_peft.shape[0] == r
        scale = alpha / math.sqrt(r)
        np.testing.assert_array_equal(params[f"{module}.lora_A.MatMul.weight"], a_peft.T)
        assert_close(params[f"{module}.lora_B.MatMul.weight"], b_peft.T.astype(np.float64) * scale, rtol=1e-6)


def test_run_matches_peft_math(tiny, tiny_model, tiny_adapters):
    ids = T.make_input_ids(tiny, batch=2, seq=6, seed=3)
    tiny_adapters.load(str(PEFT / "tiny_qv"), "qv")
    tiny_adapters.load(str(PEFT / "tiny_rs"), "rs")
    for names in (["qv"], ["rs"], ["qv", "rs"]):
        refs = []
        for n in names:
            deltas = _reference_deltas({"qv": "tiny_qv", "rs": "tiny_rs"}[n])
            p = {}
            for module, d in deltas.items():  # x·A·B with A = delta^T, B = identity
                p[f"{module}.lora_A.MatMul.weight"] = d.T
                p[f"{module}.lora_B.MatMul.weight"] = np.eye(d.shape[0])
            refs.append((p, 1.0))
        out = _run(tiny_model, tiny_adapters, names, ids)
        assert_close(out, T.reference_forward(tiny, ids, refs), rtol=1e-4, atol=1e-4)
        assert not np.allclose(out, T.reference_forward(tiny, ids), atol=1e-3)


def test_builder_olive_model_gets_the_olive_adapter():
    """llama_a is the PEFT adapter the GenAI model builder + Olive turned into lora/adapters/a.onnx_adapter."""
    with ml.Model(str(LORA_GENAI)) as m, ml.Adapters(m) as reg:
        reg.load(str(PEFT / "llama_a"), "a")
        ours = reg.get("a").parameters
        with ml.Adapter.open(LORA_GENAI / "adapters" / "a.onnx_adapter") as olive:
            theirs = olive.parameters
        assert set(ours) == set(theirs)
        for name, value in theirs.items():
            assert ours[name].dtype == value.dtype and ours[name].shape == value.shape
            assert_close(ours[name], value, rtol=1e-6, atol=1e-7)


def test_builder_olive_model_generates_like_pytorch_peft():
    """Greedy decoding with the PEFT folder loaded directly gives PyTorch + PEFT's tokens and logits
    (fixtures/generation/reference.json, recorded by build_generation_fixtures.py for adapter "a")."""
    from multilora.generation import Generator, GeneratorParams

    gen_fx = FX / "generation"
    ref = json.loads((gen_fx / "reference.json").read_text())
    logits_ref = np.load(gen_fx / "reference_logits.npz")
    with ml.Model(str(LORA_GENAI)) as m, ml.Adapters(m) as reg:
        reg.load(str(PEFT / "llama_a"), "a")
        for index, prompt in enumerate(ref["prompt_ids"]):
            with GeneratorParams(m) as params:
                params.set_search_options(max_length=len(prompt) + ref["new_tokens"])
                params.set_active_adapters(reg, ["a"])
                with Generator(m, params) as gen:
                    gen.append_tokens(np.asarray(prompt, dtype=np.int32))
                    steps = []
                    while not gen.is_done():
                        gen.generate_next_token()
                        steps.append(gen.get_logits()[0].copy())
                    tokens = gen.get_sequence(0)[len(prompt) :].tolist()
            assert tokens == ref["torch"]["a"][index]
            np.testing.assert_allclose(np.stack(steps), logits_ref[f"a/{index}"], rtol=0, atol=1e-4)


def test_roundtrip_through_a_written_folder(model, adapters, lora_model, params_sql, ids, tmp_path):
    folder = tmp_path / "sql_peft"
    write_peft_folder(folder, params_sql, lora_alpha=16.0)
    adapters.load(str(folder), "sql")
    got = adapters.get("sql").parameters
    assert set(got) == set(params_sql)
    for k, v in params_sql.items():
        assert_close(got[k], v, rtol=1e-6, atol=1e-7)
    assert_close(_run(model, adapters, ["sql"], ids), T.reference_forward(lora_model, ids, [(params_sql, 1.0)]))


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda n: n.replace(".MatMul.weight", ".weight"), id="no-MatMul"),
        pytest.param(lambda n: n.replace(".attn.", "."), id="no-block"),
        pytest.param(lambda n: n.replace(".attn.", ".self_attention."), id="self_attention"),
    ],
)
def test_model_spellings_are_tolerated(tmp_path, lora_model, params_sql, spelling):
    """Model inputs spelled '...q_proj.lora_A.weight' (no .MatMul), without the block, or with another
    alias of it; PEFT names with 'attn' instead of 'self_attn'."""
    m = onnx.load(lora_model.path)
    ren = {n: spelling(n) for n in lora_model.lora_names}
    for coll in (m.graph.input, m.graph.initializer):
        for x in coll:
            x.name = ren.get(x.name, x.name)
    for node in m.graph.node:
        for i, n in enumerate(node.input):
            node.input[i] = ren.get(n, n)
    path = tmp_path / "nomatmul.onnx"
    onnx.save(m, str(path))
    folder = tmp_path / "attn"
    write_peft_folder(folder, params_sql, self_attn=False)
    with ml.Model(str(path)) as model, ml.Adapters(model) as reg:
        reg.load(str(folder), "x")
        got = reg.get("x").parameters
    assert set(got) == {ren[k] for k in params_sql}
    for k, v in params_sql.items():
        assert_close(got[ren[k]], v, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("src", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("model_dtype", ["float32", "float16"])
def test_dtypes_convert_to_the_model_lora_dtype(tmp_path, src, model_dtype):
    import ml_dtypes

    lm = T.make_lora_model(tmp_path / "m.onnx", layers=1, hidden=8, dtype=model_dtype, seed=1)
    params = T.make_adapter_params(lm, rank=2, seed=2, dtype=np.float32)
    folder = tmp_path / "f"
    write_peft_folder(folder, params, lora_alpha=2.0, dtype=ml_dtypes.bfloat16 if src == "bfloat16" else src)
    raw = read_safetensors(folder / "adapter_model.safetensors")
    assert {str(v.dtype) for v in raw.values()} == {src}
    with ml.Model(lm.path) as m, ml.Adapters(m) as reg:
        reg.load(str(folder), "x")
        got = reg.get("x").parameters
    tol = {"float32": 1e-6, "float16": 2e-3, "bfloat16": 1.6e-2}
    for k, v in params.items():
        assert got[k].dtype == np.dtype(model_dtype)
        assert_close(got[k], v, rtol=max(tol[src], tol[model_dtype]), atol=max(tol[src], tol[model_dtype]))


# ---- errors: every unsupported thing named, never dropped -----------------------------------------------------


def test_dora_is_refused_naming_the_setting_and_the_vectors(tiny_adapters):
    with pytest.raises(ml.FormatError) as e:
        tiny_adapters.load(str(PEFT / "tiny_dora"), "d")
    assert_error(
        e,
        ml.FormatError,
        "MLORA_STATUS_FORMAT",
        "use_dora",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
        "base_model.model.model.layers.1.self_attn.q_proj.lora_magnitude_vector",
    )
    assert tiny_adapters.names() == []


def test_embedding_lora_is_refused(tiny_adapters):
    with pytest.raises(ml.FormatError) as e:
        tiny_adapters.load(str(PEFT / "tiny_embed"), "e")
    assert_error(
        e,
        ml.FormatError,
        "MLORA_STATUS_FORMAT",
        "embed_tokens.lora_embedding_A' (embedding LoRA)",
        "embed_tokens.lora_embedding_B' (embedding LoRA)",
        "embed_tokens.base_layer.weight",
    )


def test_modules_to_save_is_refused(tiny_adapters):
    with pytest.raises(ml.FormatError) as e:
        tiny_adapters.load(str(PEFT / "tiny_mts"), "m")
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "modules_to_save", "'base_model.model.lm_head.weight'")


def test_each_unmatched_tensor_is_named(adapters, params_sql, tmp_path):
    folder = tmp_path / "extra"
    write_peft_folder(folder, params_sql)
    st = read_safetensors(folder / "adapter_model.safetensors")
    st["base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight"] = np.ones((4, 16), np.float32)
    st["base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight"] = np.ones((16, 4), np.float32)
    st["base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight"] = np.ones((4, 16), np.float32)
    st["base_model.model.model.layers.0.cross_attn.q_proj.lora_A.weight"] = np.ones((4, 16), np.float32)
    write_safetensors(folder / "adapter_model.safetensors", st)
    with pytest.raises(ml.NotFoundError) as e:
        adapters.load(str(folder), "x")
    assert_error(
        e,
        ml.NotFoundError,
        "MLORA_STATUS_NOT_FOUND",
        "layers.7.self_attn.q_proj.lora_A.weight",
        "layers.7.self_attn.q_proj.lora_B.weight",
        "layers.0.mlp.gate_proj.lora_A.weight",
        "layers.0.cross_attn.q_proj.lora_A.weight",  # another block is not tolerated like self_attn/attn
        "model.layers.0.attn.q_proj.lora_A.MatMul.weight",  # the model's LoRA inputs are listed
    )


def test_missing_partner_and_wrong_rank(adapters, params_sql, tmp_path):
    folder = tmp_path / "half"
    write_peft_folder(folder, params_sql)
    st_path = folder / "adapter_model.safetensors"
    st = read_safetensors(st_path)
    del st["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]
    write_safetensors(st_path, st)
    with pytest.raises(ml.FormatError) as e:
        adapters.load(str(folder), "x")
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "layers.1.self_attn.v_proj.lora_A.weight", "no lora_B")

    write_peft_folder(folder, params_sql, config={"r": 8})
    with pytest.raises(ml.FormatError) as e:
        adapters.load(str(folder), "x")
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "has rank 4", "r = 8")


def test_wrong_features_are_a_shape_mismatch(adapters, lora_model, tmp_path):
    wide = {k: np.ones((32, 2) if "lora_A" in k else (2, 16), np.float32) for k in lora_model.lora_names}
    folder = tmp_path / "wide"
    write_peft_folder(folder, wide)
    with pytest.raises(ml.ShapeMismatchError) as e:
        adapters.load(str(folder), "x")
    assert_error(e, ml.ShapeMismatchError, "MLORA_STATUS_SHAPE_MISMATCH", "[2, 32]", "32 in features", "has 16")


def _corrupt(folder: Path, patch) -> None:
    path = folder / "adapter_model.safetensors"
    blob = path.read_bytes()
    (n,) = struct.unpack_from("<Q", blob)
    header = json.loads(blob[8 : 8 + n])
    out = patch(blob, header)
    path.write_bytes(out)


def _with_header(blob: bytes, header) -> bytes:
    (n,) = struct.unpack_from("<Q", blob)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + blob[8 + n :]


def test_corrupt_safetensors_name_file_and_tensor(adapters, params_sql, tmp_path):
    name = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"

    def fresh(tag: str) -> Path:
        folder = tmp_path / tag
        write_peft_folder(folder, params_sql)
        return folder

    def expect(folder: Path, *subs: str) -> None:
        with pytest.raises(ml.FormatError) as e:
            adapters.load(str(folder), "x")
        assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", str(folder / "adapter_model.safetensors"), *subs)

    f = fresh("len")
    _corrupt(f, lambda b, h: struct.pack("<Q", 1 << 40) + b[8:])
    expect(f, "header length")

    f = fresh("offsets")
    _corrupt(f, lambda b, h: _with_header(b, {**h, name: {**h[name], "data_offsets": [0, 1 << 30]}}))
    expect(f, name, "outside the data section")

    f = fresh("size")
    _corrupt(f, lambda b, h: _with_header(b, {**h, name: {**h[name], "shape": [4, 17]}}))
    expect(f, name, "needs")

    f = fresh("json")
    _corrupt(f, lambda b, h: struct.pack("<Q", 5) + b"{nope" + b[8:])
    expect(f, "not valid JSON")

    f = fresh("dtype")
    _corrupt(f, lambda b, h: _with_header(b, {**h, name: {**h[name], "dtype": "I32"}}))
    with pytest.raises(ml.TypeMismatchError) as e:
        adapters.load(str(f), "x")
    assert_error(e, ml.TypeMismatchError, "MLORA_STATUS_TYPE_MISMATCH", name, "I32")


def test_folder_without_config_or_safetensors(adapters, params_sql, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ml.MultiloraIOError) as e:  # like any directory that is not an adapter
        adapters.load(str(empty), "x")
    assert_error(e, ml.MultiloraIOError, "MLORA_STATUS_IO", str(empty), "a directory", "adapter_config.json")
    folder = tmp_path / "bin"
    write_peft_folder(folder, params_sql)
    os.rename(folder / "adapter_model.safetensors", folder / "adapter_model.bin")
    with pytest.raises(ml.MultiloraFileNotFoundError) as e:
        adapters.load(str(folder), "x")
    assert_error(
        e, ml.MultiloraFileNotFoundError, "MLORA_STATUS_NOT_FOUND", "adapter_model.safetensors", "adapter_model.bin"
    )
    (folder / "adapter_config.json").write_text("{not json")
    (folder / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(ml.FormatError) as e:
        adapters.load(str(folder), "x")
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "adapter_config.json", "not valid JSON")


# ---- model versions --------------------------------------------------------------------------------------------


def test_write_adapter_with_model_records_its_version(model, adapters, params_sql, tmp_path, shared_dim_model):
    path = tmp_path / "v.onnx_adapter"
    ml.write_adapter(path, params_sql, model=model)
    with ml.Adapter.open(path) as a:
        assert a.model_version == model.version != 0
    adapters.load(path, "v")
    with pytest.raises(ValueError):
        ml.write_adapter(path, params_sql, model_version=model.version + 1, model=model)


def test_version_of_another_model_is_refused(tiny, lora_model, tmp_path):
    """tiny_qv converted for the 4-module model carries its version; lora_model has the same q/v inputs
    but another signature, so loading is refused unless asked to ignore it."""
    out = tmp_path / "qv.onnx_adapter"
    assert cli.main(["convert", str(PEFT / "tiny_qv"), "-o", str(out), "--model", tiny.path]) == 0
    with ml.Model(lora_model.path) as other, ml.Adapters(other) as reg:
        with pytest.raises(ml.VersionMismatchError) as e:
            reg.load(out, "qv")
        assert_error(e, ml.VersionMismatchError, "MLORA_STATUS_VERSION_MISMATCH", "model version")
        reg.load(out, "qv", ignore_model_version=True)


# ---- convert -------------------------------------------------------------------------------------------------


def test_convert_loads_in_onnxruntime_with_the_same_output(tiny, tiny_model, tiny_adapters, tmp_path, capsys):
    out = tmp_path / "rs.onnx_adapter"
    assert cli.main(["convert", str(PEFT / "tiny_rs"), "-o", str(out), "--model", tiny.path]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}: 16 parameters, rank 8, float32, model_version {tiny_model.version}" in text
    with ml.Adapter.open(out) as a:
        assert a.model_version == tiny_model.version and a.format_version == 1
    ids = T.make_input_ids(tiny, batch=2, seq=5, seed=9)
    tiny_adapters.load(str(PEFT / "tiny_rs"), "folder")
    tiny_adapters.load(out, "file")
    from_folder = _run(tiny_model, tiny_adapters, ["folder"], ids)
    assert_close(_run(tiny_model, tiny_adapters, ["file"], ids), from_folder, rtol=0, atol=0)
    assert_close(OrtBaseline(tiny.path).run(ids, str(out)), from_folder)


def test_convert_dtype_float16(tiny, tmp_path, capsys):
    out = tmp_path / "qv16.onnx_adapter"
    assert cli.main(["convert", str(PEFT / "tiny_qv"), "-o", str(out), "--model", tiny.path, "--dtype", "float16"]) == 0
    captured = capsys.readouterr()
    assert "float16" in captured.out and "will not load" in captured.err
    with ml.Adapter.open(out) as a:
        assert set(a.dtypes.values()) == {"float16"}


def test_convert_errors(tiny, tmp_path, capsys):
    assert cli.main(["convert", str(PEFT / "tiny_dora"), "-o", str(tmp_path / "x"), "--model", tiny.path]) == 1
    assert "MLORA_STATUS_FORMAT" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert cli.main(["convert", str(tmp_path / "nope"), "-o", str(tmp_path / "x"), "--model", tiny.path]) == 1


# ---- check ---------------------------------------------------------------------------------------------------


def test_check_ok_exit_zero(lora_model, sql_ours, q_ours, tmp_path, params_sql, capsys):
    folder = tmp_path / "p"
    write_peft_folder(folder, params_sql)
    assert cli.main(["check", "--model", lora_model.path, sql_ours, q_ours, str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"{sql_ours}: OK" in out and f"{folder}: OK" in out
    assert "unset" in out  # q_ours leaves v_proj at the base model
    assert "0 mismatched" in out


def test_check_names_each_unmatched_peft_tensor(lora_model, tmp_path, params_sql):
    folder = tmp_path / "extra"
    write_peft_folder(folder, params_sql)
    st = read_safetensors(folder / "adapter_model.safetensors")
    extra = "base_model.model.model.layers.5.self_attn.q_proj.lora_A.weight"
    st[extra] = np.ones((4, 16), np.float32)
    write_safetensors(folder / "adapter_model.safetensors", st)
    report = check(lora_model.path, [folder])
    assert [(r.parameter, r.status) for r in report.rows if not r.ok] == [(extra, "unknown")]


def test_check_mismatches_exit_one(lora_model, tmp_path, params_sql, capsys):
    bad = dict(params_sql)
    bad["model.layers.9.attn.q_proj.lora_A.MatMul.weight"] = np.ones((16, 4), np.float32)
    bad["model.layers.0.attn.q_proj.lora_B.MatMul.weight"] = np.ones((4, 15), np.float32)
    del bad["model.layers.1.attn.v_proj.lora_B.MatMul.weight"]
    path = tmp_path / "bad.onnx_adapter"
    ml.write_adapter(path, bad)
    assert cli.main(["check", "--json", "--model", lora_model.path, str(path), str(PEFT / "tiny_dora")]) == 1
    report = json.loads(capsys.readouterr().out)
    status = {(r["adapter"], r["parameter"]): r["status"] for r in report["rows"]}
    assert status[(str(path), "model.layers.9.attn.q_proj.lora_A.MatMul.weight")] == "unknown"
    assert status[(str(path), "model.layers.0.attn.q_proj.lora_B.MatMul.weight")] == "shape"
    assert status[(str(path), "model.layers.1.attn.v_proj.lora_A.MatMul.weight")] == "partner"
    dora = str(PEFT / "tiny_dora")
    assert status[(dora, "(adapter_config.json)")] == "unsupported"
    assert status[(dora, "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector")] == "unsupported"
    assert status[(dora, "base_model.model.model.layers.1.self_attn.q_proj.lora_magnitude_vector")] == "unsupported"
    assert report["mismatched"] >= 4

    with ml.Model(lora_model.path) as m:
        v = tmp_path / "v.onnx_adapter"
        ml.write_adapter(v, params_sql, model_version=m.version + 1)
        r = check(m, [v])
        assert [x.status for x in r.rows if not x.ok] == ["model_version"]
        assert check(m, [v], ignore_model_version=True).mismatched == 0


# ---- prepare-model ---------------------------------------------------------------------------------------------


def test_prepare_model_adds_lora_inputs(tmp_path, capsys):
    plain = T.make_lora_model(tmp_path / "plain.onnx", layers=2, hidden=16, modules=(), seed=4)
    twin = T.make_lora_model(tmp_path / "twin.onnx", layers=2, hidden=16, modules=("q_proj", "v_proj"), seed=4)
    out = tmp_path / "prepared.onnx"
    assert cli.main(["prepare-model", plain.path, str(out), "--targets", "q_proj,v_proj"]) == 0
    assert "4 projections adapted (8 LoRA inputs)" in capsys.readouterr().out
    ids = T.make_input_ids(plain, batch=2, seq=5, seed=1)
    base = OrtBaseline(plain.path).run(ids)
    params = T.make_adapter_params(twin, rank=3, seed=8)
    with ml.Model(str(out)) as m, ml.Adapters(m) as reg:
        assert [li.name for li in m.lora_inputs] == twin.lora_names
        assert len({li.shape for li in m.lora_inputs}) == 2  # one rank dim name per projection
        assert_close(m.run(["logits"], {"input_ids": ids})[0], base, rtol=0, atol=0)
        path = tmp_path / "a.onnx_adapter"
        ml.write_adapter(path, params, model=m)
        reg.load(path, "a")
        got = _run(m, reg, ["a"], ids)
    assert_close(OrtBaseline(str(out)).run(ids), base, rtol=0, atol=0)
    assert_close(got, T.reference_forward(plain, ids, [(params, 1.0)]), rtol=1e-4, atol=1e-4)
    assert_close(OrtBaseline(str(out)).run(ids, str(path)), got)
    # a second time: the names are taken
    assert cli.main(["prepare-model", str(out), str(tmp_path / "again.onnx"), "--targets", "q_proj"]) == 1
    assert cli.main(["prepare-model", plain.path, str(tmp_path / "none.onnx"), "--targets", "nothing"]) == 1


def test_fixtures_are_small():
    total = sum(p.stat().st_size for p in PEFT.rglob("*") if p.is_file())
    assert total < 1_000_000


def test_inspect_peft_folder(capsys):
    assert cli.main(["inspect", str(PEFT / "tiny_rs")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"PEFT folder {PEFT / 'tiny_rs'}")
    assert "use_rslora      true" in out and 'rank_pattern    {"v_proj": 4}' in out
    line = next(
        ln for ln in out.splitlines() if ln.startswith("base_model.model.model.layers.0.self_attn.v_proj.lora_A")
    )
    assert line.split()[1:] == ["F32", "[4,", "16]"]
    assert cli.main(["inspect", "--json", str(PEFT / "tiny_qv")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "peft" and info["config"]["r"] == 4 and len(info["tensors"]) == 8
