"""Writes the fixtures the C tests use into DIR: a one-projection LoRA model, two adapters written by
onnxruntime.AdapterFormat (ONNX Runtime's own writer), an input and numpy reference outputs.

Layout of DIR:
  model.onnx            y = x·W + (x·A)·B, x [batch, 8] float32, y [batch, 6]
  batch.onnx            the same model prepared for adapter-aware batching by hand (what
                        `multilora prepare-batching --kernel gather` writes): stacked LoRA inputs
                        [lora_slots, 8, r] / [lora_slots, r, 6] gathered with the int64 input lora_slot [batch]
  a.onnx_adapter        rank 2, A/B seeded
  b.onnx_adapter        rank 3
  x.bin                 float32 [2, 8]
  expect_base.bin, expect_a.bin, expect_b.bin, expect_mix.bin (a*1.0 + b*0.5)   float32 [2, 6]
  engine/               the builder + Olive generation fixture (tests/python/fixtures/generation/lora) with
                        model.onnx prepared by prepare_batching (fused kernel), adapters a and b
  engine_plain/         the same folder unprepared
  half/model.onnx       the fixture's model.onnx prepared with the fused kernel and float16 slots
                        (prepare_batching(lora_dtype="float16")); half/a32.onnx_adapter is the fixture's adapter a
                        (float32), half/a16.onnx_adapter the same values converted to float16 by numpy
  engine/requests.txt   one request per line: "<set> <n> <prompt ids> <m> <expected ids>", set = base, a, b
                        or a+b; expected = the recorded PyTorch + PEFT greedy ids (max_length = n + new_tokens)
"""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

IN, OUT = 8, 6
A_NAME = "model.layers.0.attn.q_proj.lora_A.MatMul.weight"
B_NAME = "model.layers.0.attn.q_proj.lora_B.MatMul.weight"


def make_model(path: Path, w: np.ndarray) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", IN])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", OUT])
    a_in = helper.make_tensor_value_info(A_NAME, TensorProto.FLOAT, [IN, "lora_r"])
    b_in = helper.make_tensor_value_info(B_NAME, TensorProto.FLOAT, ["lora_r", OUT])
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(np.zeros((IN, 0), np.float32), A_NAME),
        numpy_helper.from_array(np.zeros((0, OUT), np.float32), B_NAME),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["base"]),
        helper.make_node("MatMul", ["x", A_NAME], ["xa"]),
        helper.make_node("MatMul", ["xa", B_NAME], ["delta"]),
        helper.make_node("Add", ["base", "delta"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "lora_one_proj", [x, a_in, b_in], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def make_batch_model(path: Path, w: np.ndarray) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", IN])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", OUT])
    slot = helper.make_tensor_value_info("lora_slot", TensorProto.INT64, ["lora_batch"])
    a_in = helper.make_tensor_value_info(A_NAME, TensorProto.FLOAT, ["lora_slots", IN, "lora_r"])
    b_in = helper.make_tensor_value_info(B_NAME, TensorProto.FLOAT, ["lora_slots", "lora_r", OUT])
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(np.zeros((1,), np.int64), "lora_slot"),
        numpy_helper.from_array(np.zeros((1, IN, 0), np.float32), A_NAME),
        numpy_helper.from_array(np.zeros((1, 0, OUT), np.float32), B_NAME),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["base"]),
        helper.make_node("Gather", [A_NAME, "lora_slot"], ["a_rows"], axis=0),  # [batch, 8, r]
        helper.make_node("Gather", [B_NAME, "lora_slot"], ["b_rows"], axis=0),  # [batch, r, 6]
        helper.make_node("Unsqueeze", ["x", "axis1"], ["x3"]),  # [batch, 1, 8]
        helper.make_node("MatMul", ["x3", "a_rows"], ["xa"]),
        helper.make_node("MatMul", ["xa", "b_rows"], ["delta3"]),
        helper.make_node("Squeeze", ["delta3", "axis1"], ["delta"]),
        helper.make_node("Add", ["base", "delta"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "lora_one_proj_batched", [x, slot, a_in, b_in], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def write_adapter(path: Path, a: np.ndarray, b: np.ndarray) -> None:
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(1)
    fmt.set_model_version(0)
    fmt.set_parameters({A_NAME: ort.OrtValue.ortvalue_from_numpy(a), B_NAME: ort.OrtValue.ortvalue_from_numpy(b)})
    fmt.export_adapter(str(path))


def main(out: str) -> None:
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    w = rng.standard_normal((IN, OUT)).astype(np.float32)
    a1, b1 = rng.standard_normal((IN, 2)).astype(np.float32), rng.standard_normal((2, OUT)).astype(np.float32)
    a2, b2 = rng.standard_normal((IN, 3)).astype(np.float32), rng.standard_normal((3, OUT)).astype(np.float32)
    x = rng.standard_normal((2, IN)).astype(np.float32)
    make_model(d / "model.onnx", w)
    make_batch_model(d / "batch.onnx", w)
    write_adapter(d / "a.onnx_adapter", a1, b1)
    write_adapter(d / "b.onnx_adapter", a2, b2)
    x.tofile(d / "x.bin")
    (x @ w).astype(np.float32).tofile(d / "expect_base.bin")
    (x @ w + x @ a1 @ b1).astype(np.float32).tofile(d / "expect_a.bin")
    (x @ w + x @ a2 @ b2).astype(np.float32).tofile(d / "expect_b.bin")
    (x @ w + x @ a1 @ b1 + 0.5 * (x @ a2 @ b2)).astype(np.float32).tofile(d / "expect_mix.bin")

    make_engine_fixture(d / "engine")


def make_engine_fixture(d: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    fx = root / "tests" / "python" / "fixtures" / "generation"
    source = root / "python" / "multilora" / "prepare_batching.py"
    spec = importlib.util.spec_from_file_location("prepare_batching", source)
    assert spec is not None and spec.loader is not None
    pb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pb)
    for folder in (d, d.with_name("engine_plain")):
        if folder.exists():
            shutil.rmtree(folder)
    shutil.copytree(fx / "lora", d.with_name("engine_plain"))
    shutil.copytree(fx / "lora", d, ignore=shutil.ignore_patterns("model.onnx"))
    pb.prepare_batching(fx / "lora" / "model.onnx", d / "model.onnx", kernel="fused")
    ref = json.loads((fx / "reference.json").read_text())
    lines = []
    for label in ("base", "a", "b", "a+b"):
        for p, prompt in enumerate(ref["prompt_ids"]):
            expect = ref["torch"][label][p]
            lines.append(" ".join(map(str, [label, len(prompt), *prompt, len(expect), *expect])))
    (d / "requests.txt").write_text("\n".join(lines) + "\n")
    (d / "new_tokens.txt").write_text(f"{ref['new_tokens']}\n")

    half = d.with_name("half")
    half.mkdir(exist_ok=True)
    pb.prepare_batching(fx / "lora" / "model.onnx", half / "model.onnx", kernel="fused", lora_dtype="float16")
    shutil.copyfile(fx / "lora" / "adapters" / "a.onnx_adapter", half / "a32.onnx_adapter")
    a = ort.AdapterFormat.read_adapter(str(fx / "lora" / "adapters" / "a.onnx_adapter"))
    values = {k: ort.OrtValue.ortvalue_from_numpy(v.numpy().astype(np.float16)) for k, v in a.get_parameters().items()}
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(1)
    fmt.set_model_version(0)
    fmt.set_parameters(values)
    fmt.export_adapter(str(half / "a16.onnx_adapter"))


if __name__ == "__main__":
    main(sys.argv[1])
