"""Builds the model set of ``bench_batching_llm.py``: a random Llama-like fp32 model, its LoRA variant and N
rank-r adapters on q/k/v/o/gate/up/down, with the real tools, offline and seeded.

Into ``OUT`` (default ``build-bench-llm/<dims>/``; every step is skipped when its output exists):

- ``hf/``: ``LlamaForCausalLM`` (transformers, random init, seed 0, untied embeddings) and a word-level
  ``tokenizer.json`` with one word per id (the benchmark feeds random ids; the builder wants a tokenizer).
- ``peft/a<i>/``: PEFT LoRA adapters (random non-zero A and B, seed 100 + i) on every projection.
- ``base/``: ONNX Runtime GenAI's builder, no LoRA: ``python -m onnxruntime_genai.models.builder -i hf -o base
  -p fp32 -e cpu``.
- ``lora/``: the builder with ``--extra_options adapter_path=peft/a0``, then ``olive generate-adapter``
  (LoRA weights become optional inputs with zero-rank defaults); ``lora/adapters/a<i>.onnx_adapter`` are
  every PEFT folder converted for that model by ``multilora.peft.convert`` (what ``multilora convert``
  does); Olive's own file for a0 is kept as ``lora/olive_a0.onnx_adapter`` and compared with ours.
- ``--precision int4``: the same with the builder at ``-p int4`` (MatMulNBits, 4-bit, block 32,
  accuracy_level 4), in one of two LoRA forms (``--int4-lora``): ``quantized`` (the default: the builder
  quantizes the LoRA MatMuls too, Olive extracts ``*.weight_Q4`` / ``*.weight_scales`` inputs whose node
  attributes fix the rank, so every adapter is made by the builder + Olive, one run per adapter:
  ``lora/adapters/a<i>.onnx_adapter``) or ``excluded`` (``--extra_options nodes_to_exclude=<every LoRA
  MatMul>``: float LoRA inputs over int4 base weights; adapters converted by multilora as for fp32).
- ``batched-<kernel>/``: ``lora/`` rewritten by ``multilora prepare-batching`` (per kernel when the installed
  multilora has ``--kernel``, else one ``batched-gather/``), with the same genai_config.json.
- ``adapters-<dtype>/a<i>.onnx_adapter`` and ``batched-fused-<dtype>/`` for each ``--half-dtypes`` entry
  (default float16): the adapters with every value rounded to that dtype (what ``olive convert-adapters --dtype
  float16`` writes), and ``lora/`` prepared with ``--lora-dtype <dtype>`` (16-bit slots; needs a multilora whose
  prepare-batching has ``--lora-dtype``). ``int8`` (block-scaled int8 slots) makes only ``batched-fused-int8/``:
  its slots take the float32 adapters, quantized when a set is built.

    python benchmarks/build_llm_bench_model.py [--hidden 768 --layers 12 ...] [--out DIR]

Needs torch, transformers, peft, onnxruntime-genai (builder), olive-ai, onnx and multilora: ``python -m pip install
-r requirements-bench.txt`` (pinned) into the venv that has multilora. Every tool runs through this interpreter
(``python -m onnxruntime_genai.models.builder``, ``python -m olive``): nothing needs to be on PATH.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import time
from typing import Dict, List, Sequence

import numpy as np

from multilora.testing import genai_builder_command, olive_generate_adapter_command, run_export_tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MODEL_SEED = 0
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]  # ids 0..3


def log(msg: str) -> None:
    print(f"[build-llm] {msg}", flush=True)


def add_dims(ap: argparse.ArgumentParser) -> None:
    """The model options shared with the benchmark."""
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--intermediate", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--head-dim", type=int, default=64, help="attention heads = hidden / head-dim")
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=int, default=32)
    ap.add_argument("--adapters", type=int, default=16)
    ap.add_argument("--context", type=int, default=512, help="max_position_embeddings (the ONNX context length)")
    ap.add_argument("--precision", choices=["fp32", "int4"], default="fp32", help="the builder's -p")
    ap.add_argument(
        "--int4-lora",
        choices=["quantized", "excluded"],
        default="quantized",
        help="int4: LoRA MatMuls quantized with the base (Olive's weight_Q4/weight_scales adapters) or excluded "
        "from quantization (float LoRA inputs)",
    )
    ap.add_argument("--tiny", action="store_true", help="small dims for a quick smoke (overrides the above)")
    ap.add_argument(
        "--half-dtypes",
        default="float16",
        help="comma-separated slot dtypes to build variants for (float16, bfloat16: 16-bit adapters and slots; "
        "int8: int8 slots fed the float32 adapters; '' for none)",
    )


def apply_tiny(args: argparse.Namespace) -> None:
    if args.tiny:
        args.hidden, args.layers, args.intermediate, args.vocab = 64, 2, 128, 512
        args.head_dim, args.kv_heads, args.rank, args.alpha, args.context = 16, 2, 4, 8, 256


def default_out(args: argparse.Namespace) -> str:
    name = (
        f"h{args.hidden}-l{args.layers}-i{args.intermediate}-v{args.vocab}-d{args.head_dim}-kv{args.kv_heads}"
        f"-r{args.rank}-n{args.adapters}-c{args.context}"
    )
    if getattr(args, "precision", "fp32") == "int4":
        name += "-int4q" if args.int4_lora == "quantized" else "-int4x"
    return os.path.join(ROOT, "build-bench-llm", name)


def run(cmd: List[str], cwd: str) -> float:
    return run_export_tool(cmd, cwd, log)


def make_hf(out: str, args: argparse.Namespace) -> str:
    hf = os.path.join(out, "hf")
    if os.path.exists(os.path.join(hf, "model.safetensors")):
        return hf
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tmp = hf + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for i in range(len(SPECIALS), args.vocab):
        vocab[f"w{i}"] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.save_pretrained(tmp)
    torch.manual_seed(MODEL_SEED)
    cfg = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.hidden // args.head_dim,
        num_key_value_heads=args.kv_heads,
        head_dim=args.head_dim,
        max_position_embeddings=args.context,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        rms_norm_eps=1e-5,
        initializer_range=0.05,  # well-separated logits: greedy tokens are stable across kernels
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(cfg).eval().save_pretrained(tmp, safe_serialization=True)
    os.replace(tmp, hf)
    return hf


def make_peft(out: str, hf: str, args: argparse.Namespace) -> List[str]:
    paths = [os.path.join(out, "peft", f"a{i}") for i in range(args.adapters)]
    todo = [i for i, p in enumerate(paths) if not os.path.exists(os.path.join(p, "adapter_config.json"))]
    if not todo:
        return paths
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    base = LlamaForCausalLM.from_pretrained(hf)
    for i in todo:
        torch.manual_seed(100 + i)
        cfg = LoraConfig(
            r=args.rank,
            lora_alpha=args.alpha,
            target_modules=TARGET_MODULES,
            init_lora_weights=False,  # random non-zero A and B (nn.Linear's uniform init)
            lora_dropout=0.0,
        )
        pm = get_peft_model(base, cfg)
        with torch.no_grad():  # B's default init is large next to a 0.05-scale base model
            for n, p in pm.named_parameters():
                if "lora_B" in n:
                    p.mul_(0.25)
        pm.save_pretrained(paths[i])
        base = pm.unload()  # the plain model again, for the next adapter
    return paths


def lora_nodes(layers: int) -> str:
    """The builder's names of every LoRA MatMul (nodes_to_exclude of the int4 form with float LoRA)."""
    names = []
    for layer in range(layers):
        for block, modules in (("attn", TARGET_MODULES[:4]), ("mlp", TARGET_MODULES[4:])):
            names += [f"/model/layers.{layer}/{block}/{m}/lora_{s}/MatMul" for m in modules for s in "AB"]
    return ",".join(names)


def olive_extract(baked: str, olive: str, work: str) -> float:
    shutil.rmtree(olive, ignore_errors=True)
    return run(
        olive_generate_adapter_command(baked, olive),
        cwd=work,
    )


def quantized_adapters(out: str, hf: str, peft: List[str], args: argparse.Namespace, timings: Dict[str, float]) -> None:
    """int4 with quantized LoRA: adapter a<i> is Olive's extraction of the builder's model with peft/a<i> baked in
    (the only way to get the builder's own quantization of each adapter); its model must match lora/'s."""
    import onnx

    def signature(d: str) -> list:
        m = onnx.load(os.path.join(d, "model.onnx"), load_external_data=False)
        return [(i.name, str(i.type)) for i in m.graph.input]

    lora = os.path.join(out, "lora")
    work = os.path.join(out, "work")
    os.makedirs(work, exist_ok=True)
    want = signature(lora)
    t0 = time.perf_counter()
    for i, path in enumerate(peft):
        dst = os.path.join(lora, "adapters", f"a{i}.onnx_adapter")
        if os.path.exists(dst):
            continue
        if i == 0:
            shutil.copy(os.path.join(lora, "olive_a0.onnx_adapter"), dst + ".tmp")
        else:
            baked, olive = os.path.join(work, f"baked_a{i}"), os.path.join(work, f"olive_a{i}")
            shutil.rmtree(baked, ignore_errors=True)
            cache = os.path.join(work, "cache")
            run(genai_builder_command(hf, baked, "int4", cache, [f"adapter_path={path}"]), cwd=work)
            olive_extract(baked, olive, work)
            if signature(olive) != want:
                raise SystemExit(f"a{i}: Olive's int4 model has another input signature than lora/'s")
            shutil.copy(os.path.join(olive, "adapter_weights.onnx_adapter"), dst + ".tmp")
            shutil.rmtree(baked, ignore_errors=True)
            shutil.rmtree(olive, ignore_errors=True)
        os.replace(dst + ".tmp", dst)
    if time.perf_counter() - t0 > 0.5:
        timings["builder + olive (quantized adapters)"] = time.perf_counter() - t0
    shutil.rmtree(work, ignore_errors=True)


def build_onnx(out: str, hf: str, peft: List[str], timings: Dict[str, float], args: argparse.Namespace) -> None:
    work = os.path.join(out, "work")
    os.makedirs(work, exist_ok=True)
    precision = getattr(args, "precision", "fp32")
    extra = []
    if precision == "int4" and args.int4_lora == "excluded":
        extra = [f"nodes_to_exclude={lora_nodes(args.layers)}"]
    cache = os.path.join(work, "cache")
    base = os.path.join(out, "base")
    if not os.path.exists(os.path.join(base, "genai_config.json")):
        timings["builder (base)"] = run(genai_builder_command(hf, base + ".tmp", precision, cache), cwd=work)
        os.replace(base + ".tmp", base)
    lora = os.path.join(out, "lora")
    if not os.path.exists(os.path.join(lora, "genai_config.json")):
        baked = os.path.join(work, "baked_a0")
        if not os.path.exists(os.path.join(baked, "genai_config.json")):
            timings["builder (LoRA a0)"] = run(
                genai_builder_command(hf, baked, precision, cache, [f"adapter_path={peft[0]}", *extra]), cwd=work
            )
        olive = os.path.join(work, "olive_a0")
        timings["olive generate-adapter"] = olive_extract(baked, olive, work)
        tmp = lora + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(os.path.join(tmp, "adapters"))
        for f in os.listdir(olive):
            if f == "adapter_weights.onnx_adapter":
                shutil.copy(os.path.join(olive, f), os.path.join(tmp, "olive_a0.onnx_adapter"))
            elif os.path.isfile(os.path.join(olive, f)):
                shutil.copy(os.path.join(olive, f), os.path.join(tmp, f))
        os.replace(tmp, lora)
    shutil.rmtree(work, ignore_errors=True)  # the builder's cache and intermediate models


def convert_adapters(out: str, peft: List[str], timings: Dict[str, float]) -> None:
    import multilora as ml
    from multilora.peft import convert

    lora = os.path.join(out, "lora")
    files = [os.path.join(lora, "adapters", f"a{i}.onnx_adapter") for i in range(len(peft))]
    todo = [i for i, f in enumerate(files) if not os.path.exists(f)]
    if todo:
        t0 = time.perf_counter()
        with ml.Model(lora) as model:
            for i in todo:
                convert(peft[i], files[i] + ".tmp", model)
                os.replace(files[i] + ".tmp", files[i])
        timings["multilora convert (adapters)"] = time.perf_counter() - t0
    # Ours against Olive's for a0: the same parameters, the same values.
    olive = ml.read_adapter(os.path.join(lora, "olive_a0.onnx_adapter")).parameters
    mine = ml.read_adapter(files[0]).parameters
    if set(olive) != set(mine):
        raise SystemExit(f"a0: multilora convert and Olive name different parameters: {sorted(set(olive) ^ set(mine))}")
    diff = max(float(np.abs(np.asarray(olive[k], np.float32) - np.asarray(mine[k], np.float32)).max()) for k in olive)
    log(f"a0: multilora convert vs olive generate-adapter: {len(mine)} parameters, max |diff| {diff:.2e}")
    if diff > 1e-5:
        raise SystemExit("a0: multilora convert and Olive disagree")


def half_dtypes(args: argparse.Namespace) -> List[str]:
    out = [d for d in args.half_dtypes.split(",") if d]
    for d in out:
        if d not in ("float16", "bfloat16", "int8"):
            raise SystemExit(f"--half-dtypes: {d!r} is not float16, bfloat16 or int8")
    return out


def slot_bytes(folder: str, rank: int) -> int:
    """Bytes one rank-``rank`` adapter occupies in the slots of the prepared model ``folder`` (what a row reads
    per step), by the slot dtype it declares: A [in, r] and B [r, out] in that dtype; int8 slots also hold the
    scales, [ceil(in/32), r] and [ceil(r/32), out] float32. (A 4-bit file is dequantized into the slots, so its
    own size is not what a step reads.)"""
    import multilora as ml

    size = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}
    total = 0
    with ml.Model(folder) as m:
        for i in m.lora_inputs:
            fixed = i.features
            total += fixed * rank * size[i.dtype]
            if i.dtype == "int8":
                k = fixed if i.rank_axis == 1 else rank  # K: A's input rows, B's rank rows
                cols = rank if i.rank_axis == 1 else fixed
                total += -(-k // 32) * cols * 4
    return total


def make_half_adapters(out: str, dtype: str, count: int, timings: Dict[str, float]) -> None:
    """adapters-<dtype>/a<i>.onnx_adapter: lora/adapters/a<i> with every value rounded to ``dtype`` (numpy's
    round to nearest even), the same model_version."""
    import ml_dtypes

    import multilora as ml

    np_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    d = os.path.join(out, f"adapters-{dtype}")
    os.makedirs(d, exist_ok=True)
    t0 = time.perf_counter()
    for i in range(count):
        dst = os.path.join(d, f"a{i}.onnx_adapter")
        if os.path.exists(dst):
            continue
        src = ml.read_adapter(os.path.join(out, "lora", "adapters", f"a{i}.onnx_adapter"))
        values = {k: np.asarray(v).astype(np_dtype) for k, v in src.parameters.items()}
        ml.write_adapter(dst, values, src.adapter_version, src.model_version)
    if time.perf_counter() - t0 > 0.5:
        timings[f"adapters to {dtype}"] = time.perf_counter() - t0


def prepare_batched(out: str, timings: Dict[str, float], halves: Sequence[str] = ()) -> List[str]:
    """Rewrites lora/ again whenever the installed prepare_batching.py differs from the one that made the folder."""
    import hashlib

    from multilora import prepare_batching as module
    from multilora.prepare_batching import prepare_batching

    with open(module.__file__, "rb") as f:
        tool = hashlib.sha256(f.read()).hexdigest()
    lora = os.path.join(out, "lora")
    has_kernel = "kernel" in inspect.signature(prepare_batching).parameters
    kernels = ["fused", "gather"] if has_kernel else ["gather"]
    jobs = [(k, "auto", f"batched-{k}") for k in kernels]
    if "lora_dtype" in inspect.signature(prepare_batching).parameters:
        jobs += [("fused", dt, f"batched-fused-{dt}") for dt in halves]
    made = []
    for kernel, lora_dtype, name in jobs:
        d = os.path.join(out, name)
        made.append(d)
        stamp = os.path.join(d, "prepared_by.txt")
        if os.path.exists(stamp) and open(stamp).read().strip() == tool:
            continue
        shutil.rmtree(d, ignore_errors=True)
        tmp = d + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        t0 = time.perf_counter()
        kw: Dict[str, str] = {"kernel": kernel} if has_kernel else {}
        if lora_dtype != "auto":
            kw["lora_dtype"] = lora_dtype
        prepare_batching(os.path.join(lora, "model.onnx"), os.path.join(tmp, "model.onnx"), **kw)
        timings[f"prepare-batching ({name[len('batched-') :]})"] = time.perf_counter() - t0
        for f in ("genai_config.json", "tokenizer.json", "tokenizer_config.json"):
            if os.path.exists(os.path.join(lora, f)):
                shutil.copy(os.path.join(lora, f), os.path.join(tmp, f))
        with open(os.path.join(tmp, "prepared_by.txt"), "w") as f:
            f.write(tool + "\n")  # sha256 of multilora/prepare_batching.py
        os.replace(tmp, d)
    return made


def build(args: argparse.Namespace, out: str) -> Dict[str, float]:
    """Builds what is missing under ``out``; returns the seconds each step took (empty when all cached)."""
    os.makedirs(out, exist_ok=True)
    timings: Dict[str, float] = {}
    t0 = time.perf_counter()
    hf = make_hf(out, args)
    peft = make_peft(out, hf, args)
    t1 = time.perf_counter()
    if t1 - t0 > 0.5:
        timings["HF model + PEFT adapters"] = t1 - t0
    build_onnx(out, hf, peft, timings, args)
    halves: List[str] = []
    if getattr(args, "precision", "fp32") == "int4" and args.int4_lora == "quantized":
        quantized_adapters(out, hf, peft, args, timings)  # multilora convert writes float weights
        # 16-bit slots need no rounded copies here: the 4-bit adapters are dequantized into the slots' dtype
        # when a prepared model loads them.
        halves = half_dtypes(args)
    else:
        convert_adapters(out, peft, timings)
        halves = half_dtypes(args)
        for dt in halves:
            if dt != "int8":  # int8 slots take the float32 adapters (quantized when a set is built)
                make_half_adapters(out, dt, len(peft), timings)
    prepare_batched(out, timings, halves)
    record = os.path.join(out, "build.json")
    prev: Dict[str, float] = {}
    if os.path.exists(record):
        with open(record) as f:
            prev = json.load(f).get("timings", {})
    with open(record, "w") as f:
        json.dump({"args": vars(args), "timings": {**prev, **timings}}, f, indent=1)
    return timings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dims(ap)
    ap.add_argument("--out", help="output folder (default build-bench-llm/<dims>)")
    args = ap.parse_args()
    apply_tiny(args)
    out = os.path.abspath(args.out or default_out(args))
    t0 = time.perf_counter()
    timings = build(args, out)
    for k, v in timings.items():
        log(f"{k}: {v:.1f} s")
    log(f"model set in {out} ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
