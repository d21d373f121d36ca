"""Adapter-aware batching benchmark: a batch whose rows each use a different adapter, in one Run.

Compares, on the same seeded ``multilora.testing`` model, adapters and inputs:
  - multilora per-row: one Run of the whole batch on the model rewritten by ``multilora prepare-batching``
    (both kernels: the fused LoraSlotMatMul op, and Gather + batched MatMul; and the fused kernel with 16-bit
    slots, ``--lora-dtype``, fed the adapters rounded to that dtype; or int8 slots fed the float32 adapters), with
    ``RunOptions.set_active_adapters_per_row`` (one distinct adapter per row);
  - ONNX Runtime's own LoRA path: it runs one adapter set per Run, so one Run per row (onnxruntime.LoraAdapter +
    RunOptions.add_active_adapter on the plain model), ``batch`` Runs in all;
  - the base model on the same batch (plain model, ORT; and multilora's prepared model with nothing fed).
Prints a table of medians with ratios, and checks that the per-row outputs equal ORT's per-adapter outputs.

    python benchmarks/bench_batching.py [--hidden 512] [--layers 4] [--rank 16] [--batch 16] [--seq 16]
        [--half float16|bfloat16|int8|none]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import List

import ml_dtypes
import numpy as np
import onnxruntime as ort
from _timing import median_ms

import multilora as ml
from multilora import testing
from multilora.prepare_batching import prepare_batching


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16, help="rows, each with its own adapter")
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for both runtimes")
    ap.add_argument(
        "--half", default="float16", choices=["float16", "bfloat16", "int8", "none"], help="16-bit or int8 slot row"
    )
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        modules = testing.ATTN_MODULES + testing.MLP_MODULES
        info = testing.make_lora_model(
            d / "model.onnx", layers=args.layers, hidden=args.hidden, vocab=1024, modules=modules, seed=0
        )
        prepare_batching(d / "model.onnx", d / "batched.onnx", kernel="fused")
        prepare_batching(d / "model.onnx", d / "gather.onnx", kernel="gather")
        paths, half_paths = [], []
        half_dtype = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16}.get(args.half)
        for i in range(args.batch):
            p = d / f"a{i}.onnx_adapter"
            params = testing.make_adapter_params(info, rank=args.rank, seed=100 + i)
            ml.write_adapter(p, params)
            paths.append(p)
            if half_dtype is not None:
                half_paths.append(d / f"a{i}_{args.half}.onnx_adapter")
                ml.write_adapter(half_paths[-1], {k: v.astype(half_dtype) for k, v in params.items()})
        if args.half == "int8":  # int8 slots take the float32 files (quantized when a set is built)
            half_dtype, half_paths = np.int8, paths
        if half_dtype is not None:
            prepare_batching(d / "model.onnx", d / "half.onnx", kernel="fused", lora_dtype=args.half)
        ids = testing.make_input_ids(info, batch=args.batch, seq=args.seq, seed=1)

        rows = [[f"a{i}"] for i in range(args.batch)]

        def per_row_model(path: Path, files: List[Path] = paths):
            m = ml.Model(path, intra_op_threads=args.threads)
            reg = ml.Adapters(m)
            for i, p in enumerate(files):
                reg.load(p, f"a{i}")
            opts = ml.RunOptions()
            opts.set_active_adapters_per_row(reg, rows)
            return m, reg, opts

        model, adapters, per_row = per_row_model(d / "batched.onnx")
        gather_model, gather_adapters, gather_opts = per_row_model(d / "gather.onnx")
        if half_dtype is not None:
            half_model, half_adapters, half_opts = per_row_model(d / "half.onnx", half_paths)
        set_ms = median_ms(lambda: per_row.set_active_adapters_per_row(adapters, rows), args.repeats)
        base_opts = ml.RunOptions()

        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(d / "model.onnx"), so, providers=["CPUExecutionProvider"])
        ort_ros = []
        keep = []
        for p in paths:
            a = ort.LoraAdapter()
            a.Load(str(p))
            keep.append(a)
            ro = ort.RunOptions()
            ro.add_active_adapter(a)
            ort_ros.append(ro)

        def ours_per_row() -> np.ndarray:
            return model.run(["logits"], {"input_ids": ids}, per_row)[0]

        def ort_per_adapter() -> List[np.ndarray]:
            return [sess.run(["logits"], {"input_ids": ids[i : i + 1]}, ort_ros[i])[0] for i in range(args.batch)]

        run_ours = median_ms(ours_per_row, args.repeats)
        run_gather = median_ms(lambda: gather_model.run(["logits"], {"input_ids": ids}, gather_opts), args.repeats)
        if half_dtype is not None:
            run_half = median_ms(lambda: half_model.run(["logits"], {"input_ids": ids}, half_opts), args.repeats)
        run_ort = median_ms(ort_per_adapter, args.repeats)
        run_base_ort = median_ms(lambda: sess.run(["logits"], {"input_ids": ids}), args.repeats)
        run_base_ours = median_ms(lambda: model.run(["logits"], {"input_ids": ids}, base_opts), args.repeats)

        max_diff = float(np.abs(ours_per_row() - np.concatenate(ort_per_adapter())).max())

    rows_out = [
        (f"per-row, {args.batch} adapters, 1 Run (fused kernel)", run_ours),
        (f"per-row, {args.batch} adapters, 1 Run (Gather+MatMul)", run_gather),
        *([(f"per-row, {args.batch} {args.half} adapters, 1 Run (fused)", run_half)] if half_dtype else []),
        (f"ORT LoRA, 1 Run per adapter ({args.batch} Runs)", run_ort),
        ("base model, same batch, 1 Run (ORT, plain)", run_base_ort),
        ("base model, same batch (multilora, prepared)", run_base_ours),
        ("set_active_adapters_per_row (resolve only)", set_ms),
    ]
    print(
        f"model: {args.layers} layers, hidden {args.hidden}, {len(info.pairs)} adapted projections; "
        f"{args.batch} rows x {args.seq} tokens, one rank-{args.rank} adapter per row; threads {args.threads}; "
        f"ORT {ort.__version__}; median of {args.repeats}"
    )
    print(f"{'measurement':<48} {'ms':>9} {'vs per-row':>11} {'vs base':>9}")
    print("-" * 80)
    for label, ms in rows_out:
        print(f"{label:<48} {ms:9.3f} {ms / run_ours:11.2f} {ms / run_base_ort:9.2f}")
    print(
        f"\nspeed-up of one per-row Run over ORT's {args.batch} Runs: {run_ort / run_ours:.2f}x; "
        f"per-row overhead over the base model: {run_ours / run_base_ort:.2f}x"
    )
    print(f"max |logits(per-row) - logits(ORT, one Run per adapter)| = {max_diff:.2e}")


if __name__ == "__main__":
    main()
