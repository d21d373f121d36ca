#!/usr/bin/env python3
"""Writes the fixtures every conformance runner and sample host uses, plus their numpy reference.

Usage: python3 tests/conformance/make_fixtures.py OUT_DIR

OUT_DIR receives
  model.onnx                      a seeded one-layer LoRA-enabled decoder (python/multilora/testing.py):
                                  input_ids int64 [batch, seq] -> logits float32 [batch, seq, 16];
                                  LoRA inputs on q_proj and v_proj (4 parameters)
  adapter_a.onnx_adapter          rank 2, q_proj only, adapter_version 1   (written by onnxruntime.AdapterFormat)
  adapter_b.onnx_adapter          rank 4, q_proj and v_proj, adapter_version 2
  adapter_bad_shape.onnx_adapter  q_proj A with 7 input features instead of 8         -> SHAPE_MISMATCH
  adapter_unknown.onnx_adapter    a parameter of layer 5, which the model lacks       -> NOT_FOUND
  adapter_fp16.onnx_adapter       the parameters of adapter_a as float16               -> TYPE_MISMATCH
  adapter_other_model.onnx_adapter  adapter_a's parameters recorded for model_version 12345 (another model's
                                  fingerprint)                                        -> VERSION_MISMATCH
  not_an_adapter.onnx_adapter     text, not a FlatBuffers adapter                      -> FORMAT
  model_batched.onnx              model.onnx rewritten by `multilora prepare-batching` (per-row adapters);
                                  reference tensors logits_rows: row 0 with adapter a, row 1 with the mix;
                                  logits_rows_a_base: row 0 with adapter a, row 1 the base model
  reference.json                  {"tensors": {name: {"dtype", "shape", "data"}}}: the input and the expected
                                  logits of every case, computed by numpy in float64 (testing.reference_forward),
                                  then cross-checked against onnxruntime's own LoRA path before being written;
                                  {"values": {name: JSON}}: the generation references below
  generation/                     a copy of the committed GenAI fixture tests/python/fixtures/generation
                                  (lora/ with genai_config.json, model.onnx, adapters/{a,b}.onnx_adapter;
                                  reference.json with PyTorch + PEFT greedy tokens), plus lora_batched/: the
                                  same folder with model.onnx rewritten by `multilora prepare-batching`
                                  (per-row adapters in generation)

The "values" of reference.json come from generation/reference.json, prompt 0, greedy, with max_length =
prompt + GEN_NEW tokens (so one case stops at eos, kept in the sequence, and the other at max_length):
gen_prompt, gen_max_length, gen_sequence_{base,a} (prompt then generated), gen_sequence_{base,a}_len,
gen_last_{base,a} (the last token as get_next_tokens gives it: [id]).

Nothing in the vectors is hand-typed numbers: they name tensors of reference.json ("ref": "logits_a") or
values ({"value_ref": "gen_sequence_a"}).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HIDDEN, VOCAB = 8, 16
MIX = (("a", 0.5), ("b", 1.5))  # the weighted mix the vectors and samples use
NEG_B = -1.0  # a negative weight: base minus adapter b
GEN_FIXTURE = ROOT / "tests" / "python" / "fixtures" / "generation"
GEN_NEW = 6  # new tokens the generation vectors and the sample hosts allow (max_length = prompt + GEN_NEW)


def generation_values(d: Path) -> dict:
    """Copies the committed GenAI fixture into d/generation and derives the generation references."""
    dst = d / "generation"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(GEN_FIXTURE / "lora", dst / "lora")
    shutil.copy2(GEN_FIXTURE / "reference.json", dst / "reference.json")
    # The same model prepared for per-row adapters (a batch whose sequences use different adapter sets).
    batched = dst / "lora_batched"
    shutil.copytree(GEN_FIXTURE / "lora", batched)
    load_prepare_batching().prepare_batching(GEN_FIXTURE / "lora" / "model.onnx", batched / "model.onnx")
    ref = json.loads((GEN_FIXTURE / "reference.json").read_text(encoding="utf-8"))
    prompt = [int(t) for t in ref["prompt_ids"][0]]
    values: dict = {"gen_prompt": prompt, "gen_max_length": len(prompt) + GEN_NEW}
    for case in ("base", "a"):
        # PyTorch + PEFT greedy tokens (eos kept, as multilora keeps it), cut to the new-token budget.
        new = [int(t) for t in ref["torch"][case][0][:GEN_NEW]]
        values[f"gen_sequence_{case}"] = prompt + new
        values[f"gen_sequence_{case}_len"] = len(prompt) + len(new)
        values[f"gen_last_{case}"] = new[-1:]
    if values["gen_sequence_base"] == values["gen_sequence_a"]:
        raise SystemExit("make_fixtures: adapter a changes nothing in the generation reference")
    # The engine scenario (engine.json): every prompt with max_length = prompt + new_tokens; the expected new
    # tokens of each (prompt, set) are the recorded PyTorch + PEFT greedy ids.
    for i, p in enumerate(ref["prompt_ids"]):
        values[f"engine_prompt_{i}"] = [int(t) for t in p]
        values[f"engine_max_length_{i}"] = len(p) + int(ref["new_tokens"])
        for label, key in (("base", "base"), ("a", "a"), ("b", "b"), ("a+b", "ab")):
            values[f"engine_tokens_{key}_{i}"] = [int(t) for t in ref["torch"][label][i]]
    values.update(penalty_values(dst, prompt))
    return values


PENALTY = 1.7
PENALTY_NEW = 10


def penalty_values(dst: Path, prompt: list) -> dict:
    """The base fixture with its logits lowered by 100 (all negative: GenAI's repetition penalty multiplies
    them, a rule applied the wrong way round shows) and greedy tokens under repetition_penalty 1.7 from
    onnxruntime-genai itself, the reference implementation of the rule."""
    import onnxruntime_genai as og

    folder = dst / "negative"
    load_testing().shift_logits_folder(GEN_FIXTURE / "base", folder, 100.0)
    max_length = len(prompt) + PENALTY_NEW

    def run(penalty: float) -> list:
        model = og.Model(str(folder))
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=max_length, do_sample=False, repetition_penalty=penalty)
        gen = og.Generator(model, params)
        gen.append_tokens(np.asarray(prompt, dtype=np.int32))
        while not gen.is_done():
            gen.generate_next_token()
        return [int(t) for t in gen.get_sequence(0)]

    with_penalty = run(PENALTY)
    if with_penalty == run(1.0):
        raise SystemExit("make_fixtures: the repetition penalty changes nothing on the negative-logits fixture")
    eos = json.loads((folder / "genai_config.json").read_text())["model"]["eos_token_id"]
    if len(with_penalty) < max_length:  # onnxruntime-genai leaves a final eos out; multilora keeps it
        with_penalty.append(int(eos if isinstance(eos, int) else eos[0]))
    return {
        "pen_prompt": prompt,
        "pen_max_length": max_length,
        "pen_penalty": PENALTY,
        "pen_sequence": with_penalty,
        "pen_sequence_len": len(with_penalty),
    }


def load_testing():
    """python/multilora/testing.py, loaded by path: the compiled extension is not needed for fixtures."""
    spec = importlib.util.spec_from_file_location("multilora_testing", ROOT / "python" / "multilora" / "testing.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def load_prepare_batching():
    """python/multilora/prepare_batching.py, loaded by path (needs only onnx)."""
    path = ROOT / "python" / "multilora" / "prepare_batching.py"
    spec = importlib.util.spec_from_file_location("multilora_prepare_batching", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def tensor_json(arr: np.ndarray) -> dict:
    arr = np.ascontiguousarray(arr)
    if arr.dtype == np.float32:
        data = [float(v) for v in arr.ravel()]  # float32 -> float64 is exact, and so is JSON's repr
        dtype = "float32"
    elif arr.dtype == np.int64:
        data = [int(v) for v in arr.ravel()]
        dtype = "int64"
    else:
        raise TypeError(arr.dtype)
    return {"dtype": dtype, "shape": list(arr.shape), "data": data}


def ort_logits(model_path: Path, ids: np.ndarray, adapter_path: Path | None = None, feeds: dict | None = None):
    """Logits from onnxruntime itself: through its LoRA adapter API, or with LoRA inputs fed directly."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # the LoRA inputs have initializers on purpose; ORT warns about that
    sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    ro = ort.RunOptions()
    if adapter_path is not None:
        ad = ort.LoraAdapter()
        ad.Load(str(adapter_path))
        ro.add_active_adapter(ad)
    inputs = {"input_ids": ids}
    inputs.update(feeds or {})
    return sess.run(["logits"], inputs, ro)[0]


def main(out_dir: str) -> int:
    t = load_testing()
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    model = t.make_lora_model(
        d / "model.onnx",
        layers=1,
        hidden=HIDDEN,
        vocab=VOCAB,
        modules=("q_proj", "v_proj"),
        seed=7,
        rank_dim="lora_r_{layer}_{module}",
    )
    params = {
        "a": t.make_adapter_params(model, rank=2, seed=11, modules=["q_proj"]),
        "b": t.make_adapter_params(model, rank=4, seed=22),
    }
    t.write_ort_adapter(d / "adapter_a.onnx_adapter", params["a"], adapter_version=1)
    t.write_ort_adapter(d / "adapter_b.onnx_adapter", params["b"], adapter_version=2)

    a_name = next(n for n in params["a"] if "lora_A" in n)
    bad = dict(params["a"])
    bad[a_name] = np.ascontiguousarray(bad[a_name][:7])
    t.write_ort_adapter(d / "adapter_bad_shape.onnx_adapter", bad)
    unknown = {n.replace("layers.0", "layers.5"): v for n, v in params["a"].items()}
    t.write_ort_adapter(d / "adapter_unknown.onnx_adapter", unknown)
    t.write_ort_adapter(d / "adapter_fp16.onnx_adapter", {n: v.astype(np.float16) for n, v in params["a"].items()})
    t.write_ort_adapter(d / "adapter_other_model.onnx_adapter", params["a"], adapter_version=1, model_version=12345)
    (d / "not_an_adapter.onnx_adapter").write_bytes(b"this is not a FlatBuffers adapter file\n" * 4)

    ids = t.make_input_ids(model, batch=2, seq=5, seed=3)
    cases = {
        "base": [],
        "a": [(params["a"], 1.0)],
        "b": [(params["b"], 1.0)],
        "mix": [(params[n], w) for n, w in MIX],
        "b_neg": [(params["b"], NEG_B)],
    }
    ref = {name: t.reference_forward(model, ids, c).astype(np.float32) for name, c in cases.items()}

    # Cross-check the reference against onnxruntime before anyone relies on it.
    got = {
        "base": ort_logits(d / "model.onnx", ids),
        "a": ort_logits(d / "model.onnx", ids, d / "adapter_a.onnx_adapter"),
        "b": ort_logits(d / "model.onnx", ids, d / "adapter_b.onnx_adapter"),
        "mix": ort_logits(d / "model.onnx", ids, feeds=t.composite_params([(params[n], w) for n, w in MIX])),
    }
    for name, value in got.items():
        err = float(np.max(np.abs(value - ref[name])))
        if not np.allclose(value, ref[name], atol=1e-4, rtol=1e-4):
            print(f"make_fixtures: onnxruntime and numpy disagree on '{name}' (max abs error {err})", file=sys.stderr)
            return 1
    if np.allclose(ref["a"], ref["base"]) or np.allclose(ref["mix"], ref["b"]):
        print("make_fixtures: adapters do not change the output; the fixture is useless", file=sys.stderr)
        return 1

    load_prepare_batching().prepare_batching(d / "model.onnx", d / "model_batched.onnx")
    ref["rows"] = np.concatenate([ref["a"][0:1], ref["mix"][1:2]])  # per-row: [["a"], mix]
    ref["rows_a_base"] = np.concatenate([ref["a"][0:1], ref["base"][1:2]])  # per-row: [["a"], []]

    tensors = {"input_ids": tensor_json(ids)}
    tensors.update({f"logits_{name}": tensor_json(v) for name, v in ref.items()})
    doc = {
        "generator": "tests/conformance/make_fixtures.py",
        "mix": [{"name": n, "weight": w} for n, w in MIX],
        "lora_names": model.lora_names,
        "tensors": tensors,
        "values": generation_values(d),
    }
    (d / "reference.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"make_fixtures: wrote {d} (model, 7 adapter files, generation/, reference.json; onnxruntime agrees)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
