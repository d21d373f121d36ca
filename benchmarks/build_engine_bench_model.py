"""Writes a random Llama-like GenAI model folder in the layout of onnxruntime-genai's model builder (with LoRA
inputs as Olive's ``generate-adapter`` leaves them), N random rank-r adapters, and the same folder prepared for
per-row adapters, with numpy and onnx only — no torch, transformers, PEFT or Olive. For the engine benchmark
(``bench_engine.py``) and quick measurements on a machine without those packages; the model built by the real
tools is ``build_llm_bench_model.py``'s.

Graph per layer (names as the builder writes them, so ``multilora prepare-batching`` finds the LoRA pairs):
SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization, q/k/v/o and gate/up/down projections each
``x·W + (x·A)·B`` with optional LoRA inputs (zero-rank defaults), GroupQueryAttention (rotary, shared
past/present buffer, lengths from the attention mask), SiLU-gated MLP; untied lm_head. Weights N(0, 0.02²),
norms 1, seeded.

Into OUT (default ``build-bench-engine/h<hidden>-l<layers>/``): ``lora/`` (model.onnx + genai_config.json +
``adapters/a<i>.onnx_adapter``) and ``batched-<kernel>/`` (model.onnx rewritten, other files shared by copy).

    python benchmarks/build_engine_bench_model.py [--hidden 768 --layers 12 --heads 12 --kv-heads 4
        --intermediate 2048 --vocab 32000 --context 1024 --rank 16 --adapters 16] [--kernel fused] [--out DIR]

The defaults are the ~125M-parameter shape of ``build_llm_bench_model.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
from typing import Dict, List

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = [("attn", "q_proj"), ("attn", "k_proj"), ("attn", "v_proj"), ("attn", "o_proj"),
           ("mlp", "gate_proj"), ("mlp", "up_proj"), ("mlp", "down_proj")]  # fmt: skip


def _load(name: str):
    path = os.path.join(ROOT, "python", "multilora", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"multilora_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def add_dims(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--adapters", type=int, default=16)


def default_out(args: argparse.Namespace) -> str:
    return os.path.join(ROOT, "build-bench-engine", f"h{args.hidden}-l{args.layers}-v{args.vocab}")


def module_dims(args: argparse.Namespace, module: str) -> tuple:
    h, d = args.hidden, args.hidden // args.heads
    return {
        "q_proj": (h, h),
        "k_proj": (h, args.kv_heads * d),
        "v_proj": (h, args.kv_heads * d),
        "o_proj": (h, h),
        "gate_proj": (h, args.intermediate),
        "up_proj": (h, args.intermediate),
        "down_proj": (args.intermediate, h),
    }[module]


def build_model(args: argparse.Namespace, path: str) -> List[str]:
    """Writes model.onnx (+ model.onnx.data); returns the LoRA input names."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    h, nh, nkv = args.hidden, args.heads, args.kv_heads
    d = h // nh
    inits: List[onnx.TensorProto] = []
    nodes: List[onnx.NodeProto] = []
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"]),
    ]
    logits_shape = ["batch_size", "sequence_length", args.vocab]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, logits_shape)]
    lora_names: List[str] = []

    def weight(name: str, shape: tuple, scale: float = 0.02) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def ones(name: str, n: int) -> str:
        inits.append(numpy_helper.from_array(np.ones(n, np.float32), name))
        return name

    def proj(x: str, layer: int, group: str, module: str) -> str:
        n_in, n_out = module_dims(args, module)
        base = f"/model/layers.{layer}/{group}/{module}"
        w = weight(f"model.layers.{layer}.{group}.{module}.MatMul.weight", (n_in, n_out))
        a_name = f"model.layers.{layer}.{group}.{module}.lora_A.MatMul.weight"
        b_name = f"model.layers.{layer}.{group}.{module}.lora_B.MatMul.weight"
        inputs.append(helper.make_tensor_value_info(a_name, TensorProto.FLOAT, [n_in, "lora_r"]))
        inputs.append(helper.make_tensor_value_info(b_name, TensorProto.FLOAT, ["lora_r", n_out]))
        inits.append(numpy_helper.from_array(np.zeros((n_in, 0), np.float32), a_name))
        inits.append(numpy_helper.from_array(np.zeros((0, n_out), np.float32), b_name))
        lora_names.extend([a_name, b_name])
        nodes.append(helper.make_node("MatMul", [x, a_name], [f"{base}/lora_A/MatMul/output_0"]))
        nodes.append(
            helper.make_node("MatMul", [f"{base}/lora_A/MatMul/output_0", b_name], [f"{base}/lora_B/MatMul/output_0"])
        )
        nodes.append(helper.make_node("MatMul", [x, w], [f"{base}/MatMul/output_0"]))
        out = f"{base}/lora/Add/output_0"
        nodes.append(helper.make_node("Add", [f"{base}/MatMul/output_0", f"{base}/lora_B/MatMul/output_0"], [out]))
        return out

    # attention mask -> seqlens_k (int32 [B], length - 1) and total_sequence_length (int32 scalar)
    nodes.append(helper.make_node("Constant", [], ["one64"], value=numpy_helper.from_array(np.array([1], np.int64))))
    nodes.append(helper.make_node("ReduceSum", ["attention_mask", "one64"], ["mask_sum"], keepdims=0))
    nodes.append(helper.make_node("Sub", ["mask_sum", "one64"], ["mask_sub"]))
    nodes.append(helper.make_node("Cast", ["mask_sub"], ["seqlens_k"], to=TensorProto.INT32))
    nodes.append(helper.make_node("Shape", ["attention_mask"], ["mask_shape"]))
    nodes.append(helper.make_node("Constant", [], ["idx1"], value=numpy_helper.from_array(np.array(1, np.int64))))
    nodes.append(helper.make_node("Gather", ["mask_shape", "idx1"], ["total64"], axis=0))
    nodes.append(helper.make_node("Cast", ["total64"], ["total_len"], to=TensorProto.INT32))
    # rotary caches [context, d/2]
    inv = 1.0 / (10000.0 ** (np.arange(0, d, 2, dtype=np.float64) / d))
    freqs = np.outer(np.arange(args.context, dtype=np.float64), inv)
    inits.append(numpy_helper.from_array(np.cos(freqs).astype(np.float32), "cos_cache"))
    inits.append(numpy_helper.from_array(np.sin(freqs).astype(np.float32), "sin_cache"))

    emb = weight("model.embed_tokens.weight", (args.vocab, h))
    nodes.append(helper.make_node("Gather", [emb, "input_ids"], ["/model/embed_tokens/Gather/output_0"]))
    x = "/model/layers.0/input_layernorm/output_0"
    nodes.append(
        helper.make_node(
            "SimplifiedLayerNormalization",
            ["/model/embed_tokens/Gather/output_0", ones("model.layers.0.input_layernorm.weight", h)],
            [x],
            epsilon=1e-5,
            axis=-1,
            stash_type=1,
        )
    )
    residual = "/model/embed_tokens/Gather/output_0"
    for layer in range(args.layers):
        q = proj(x, layer, "attn", "q_proj")
        k = proj(x, layer, "attn", "k_proj")
        v = proj(x, layer, "attn", "v_proj")
        pk, pv = f"past_key_values.{layer}.key", f"past_key_values.{layer}.value"
        for name in (pk, pv):
            inputs.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch_size", nkv, "past_sequence_length", d])
            )
        ok, ov = f"present.{layer}.key", f"present.{layer}.value"
        for name in (ok, ov):
            outputs.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch_size", nkv, "total_sequence_length", d])
            )
        attn = f"/model/layers.{layer}/attn/GroupQueryAttention/output_0"
        nodes.append(
            helper.make_node(
                "GroupQueryAttention",
                [q, k, v, pk, pv, "seqlens_k", "total_len", "cos_cache", "sin_cache"],
                [attn, ok, ov],
                domain="com.microsoft",
                num_heads=nh,
                kv_num_heads=nkv,
                scale=float(1.0 / np.sqrt(d)),
                local_window_size=-1,
                softcap=0.0,
                do_rotary=1,
                rotary_interleaved=0,
            )
        )
        o = proj(attn, layer, "attn", "o_proj")
        post = f"/model/layers.{layer}/post_attention_layernorm"
        nodes.append(
            helper.make_node(
                "SkipSimplifiedLayerNormalization",
                [residual, o, ones(f"model.layers.{layer}.post_attention_layernorm.weight", h)],
                [f"{post}/output_0", "", "", f"{post}/output_3"],
                domain="com.microsoft",
                epsilon=1e-5,
            )
        )
        y = f"{post}/output_0"
        gate = proj(y, layer, "mlp", "gate_proj")
        up = proj(y, layer, "mlp", "up_proj")
        mp = f"/model/layers.{layer}/mlp"
        nodes.append(helper.make_node("Sigmoid", [gate], [f"{mp}/act_fn/Sigmoid/output_0"]))
        nodes.append(helper.make_node("Mul", [gate, f"{mp}/act_fn/Sigmoid/output_0"], [f"{mp}/act_fn/Mul/output_0"]))
        nodes.append(helper.make_node("Mul", [f"{mp}/act_fn/Mul/output_0", up], [f"{mp}/Mul/output_0"]))
        down = proj(f"{mp}/Mul/output_0", layer, "mlp", "down_proj")
        last = layer == args.layers - 1
        nxt = f"/model/layers.{layer + 1}/" + ("final_norm_layernorm" if last else "input_layernorm")
        norm_w = ones(
            f"model.layers.{layer + 1}." + ("final_norm_layernorm.weight" if last else "input_layernorm.weight"), h
        )
        nodes.append(
            helper.make_node(
                "SkipSimplifiedLayerNormalization",
                [f"{post}/output_3", down, norm_w],
                [f"{nxt}/output_0"] + ([] if last else ["", "", f"{nxt}/output_3"]),
                domain="com.microsoft",
                epsilon=1e-5,
            )
        )
        x = f"{nxt}/output_0"
        residual = f"{nxt}/output_3"
    nodes.append(helper.make_node("MatMul", [x, weight("lm_head.MatMul.weight", (h, args.vocab))], ["logits"]))
    graph = helper.make_graph(nodes, "engine_bench", inputs, outputs, inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)], ir_version=10
    )
    onnx.save_model(model, path, save_as_external_data=True, location="model.onnx.data", size_threshold=1024)
    return lora_names


def genai_config(args: argparse.Namespace) -> Dict:
    d = args.hidden // args.heads
    return {
        "model": {
            "bos_token_id": 1,
            "context_length": args.context,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": "model.onnx",
                "head_size": d,
                "hidden_size": args.hidden,
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
                "num_attention_heads": args.heads,
                "num_hidden_layers": args.layers,
                "num_key_value_heads": args.kv_heads,
            },
            "eos_token_id": 2,
            "pad_token_id": 3,
            "type": "llama",
            "vocab_size": args.vocab,
        },
        "search": {
            "do_sample": False,
            "max_length": args.context,
            "min_length": 0,
            "num_beams": 1,
            "past_present_share_buffer": True,
            "repetition_penalty": 1.0,
            "temperature": 1.0,
            "top_k": 50,
            "top_p": 1.0,
        },
    }


def build(args: argparse.Namespace, out: str, kernels: List[str]) -> None:
    testing, pb = _load("testing"), _load("prepare_batching")
    lora = os.path.join(out, "lora")
    if not os.path.exists(os.path.join(lora, "genai_config.json")):
        os.makedirs(os.path.join(lora, "adapters"), exist_ok=True)
        print(f"[build-engine] model -> {lora}", flush=True)
        names = build_model(args, os.path.join(lora, "model.onnx"))
        rng = np.random.default_rng(100)
        for i in range(args.adapters):
            params = {}
            for name in names:
                layer_module = name.split(".lora_")[0]
                module = layer_module.split(".")[-1]
                n_in, n_out = module_dims(args, module)
                shape = (n_in, args.rank) if ".lora_A." in name else (args.rank, n_out)
                params[name] = (rng.standard_normal(shape) * 0.02).astype(np.float32)
            testing.write_ort_adapter(os.path.join(lora, "adapters", f"a{i}.onnx_adapter"), params)
        with open(os.path.join(lora, "genai_config.json"), "w") as f:
            json.dump(genai_config(args), f, indent=2)
    for kernel in kernels:
        dst = os.path.join(out, f"batched-{kernel}")
        if os.path.exists(os.path.join(dst, "model.onnx")):
            continue
        print(f"[build-engine] prepare-batching --kernel {kernel} -> {dst}", flush=True)
        os.makedirs(dst, exist_ok=True)
        shutil.copy2(os.path.join(lora, "genai_config.json"), dst)
        pb.prepare_batching(os.path.join(lora, "model.onnx"), os.path.join(dst, "model.onnx"), kernel=kernel)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_dims(ap)
    ap.add_argument("--kernel", action="append", choices=["fused", "gather"], help="default: fused")
    ap.add_argument("--out")
    args = ap.parse_args()
    build(args, args.out or default_out(args), args.kernel or ["fused"])


if __name__ == "__main__":
    main()
