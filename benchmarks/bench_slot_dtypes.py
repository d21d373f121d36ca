"""Slot dtypes on the bench LLM: what each decode step's adapters cost over the base step, per slot dtype.

Uses the model set of ``bench_batching_llm.py`` (``build_llm_bench_model.py --half-dtypes float16,bfloat16``):
``batched-fused/`` (float32 slots, the float32 adapters), ``batched-fused-<dtype>/`` (16-bit slots, the
adapters rounded to that dtype; ``batched-fused-int8/``: int8 slots fed the float32 adapters, when built with
``--half-dtypes int8``) and ``base/``. One generator per variant, ``batch`` rows each with its own
adapter (base: none), ``prompt`` random tokens; the variants' decode steps are interleaved one by one and
timed in thread CPU time with one intra-op thread (ONNX Runtime then computes in the calling thread), which
other processes on a shared machine disturb far less than wall time. Each dtype gets two identical sessions,
created in the order A B C base C' B' A' and averaged (the spread of a pair is the noise floor, an A/A check).

    python benchmarks/bench_slot_dtypes.py [--models build-bench-llm/<dims>] [--new-tokens 24] [--rounds 3]

Prints per variant the median thread CPU ms per step, the extra over the base step, and the adapter bytes
over that extra (GB/s); compare with numpy's single-thread read bandwidth (printed too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Dict, List, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from build_llm_bench_model import add_dims, apply_tiny, default_out, slot_bytes  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dims(ap)
    ap.add_argument("--models", help="model set folder (default build-bench-llm/<dims>)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    apply_tiny(args)
    args.adapters = args.batch
    root = os.path.abspath(args.models or default_out(args))

    import multilora as ml

    dtypes: Dict[str, Tuple[str, str]] = {"float32": ("batched-fused", os.path.join("lora", "adapters"))}
    for dt in ("float16", "bfloat16"):
        if os.path.exists(os.path.join(root, f"batched-fused-{dt}", "model.onnx")):
            dtypes[dt] = (f"batched-fused-{dt}", f"adapters-{dt}")
    if os.path.exists(os.path.join(root, "batched-fused-int8", "model.onnx")):
        dtypes["int8"] = ("batched-fused-int8", os.path.join("lora", "adapters"))  # float32 files, quantized
    # Two sessions per dtype, created in the order A B C base C' B' A': a session created later was measured to
    # run up to ~30% faster (adapter cost over base) than an identical one created earlier, so each dtype's two
    # sessions are averaged, which cancels a drift that is linear in the creation order.
    names = list(dtypes)
    variants: Dict[str, Tuple[str, str]] = {f"{d} (1)": dtypes[d] for d in names}
    variants["base"] = ("base", "")
    variants.update({f"{d} (2)": dtypes[d] for d in reversed(names)})

    big = np.ones(1 << 28, dtype=np.float32)  # 1 GiB: numpy's single-thread read bandwidth, best of 5
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        big.sum()
        best = min(best, time.perf_counter() - t0)
    bw = big.nbytes / best / 1e9
    del big

    rng = np.random.default_rng(1)
    prompts = rng.integers(4, 32000 if not args.tiny else args.vocab, size=(args.batch, args.prompt)).astype(np.int32)
    opened = {}
    nbytes: Dict[str, int] = {}
    for key, (folder, adapters) in variants.items():
        model = ml.Model(os.path.join(root, folder), ml.ModelOptions(intra_op_threads=1))
        reg = ml.Adapters(model)
        files = [os.path.join(root, adapters, f"a{i}.onnx_adapter") for i in range(args.batch)] if adapters else []
        for i, f in enumerate(files):
            reg.load(f, f"a{i}")
        # what the slots hold (int8: plus the block scales; 4-bit files: their dequantized values)
        nbytes[key] = len(files) * slot_bytes(os.path.join(root, folder), args.rank) if files else 0
        opened[key] = (model, reg, bool(files))

    times: Dict[str, List[float]] = {k: [] for k in variants}
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        gens = {}
        for key, (model, reg, rows) in opened.items():
            params = ml.GeneratorParams(model)
            total = args.prompt + args.new_tokens
            params.set_search_options(max_length=total, min_length=total, do_sample=False, batch_size=args.batch)
            if rows:
                params.set_active_adapters_per_row(reg, [[f"a{i}"] for i in range(args.batch)])
            gen = ml.Generator(model, params)
            gen.append_tokens(prompts)
            gen.generate_next_token()
            gens[key] = (gen, params)
        keys = list(gens)
        for step in range(args.new_tokens - 2):
            # Interleaved, one step of each variant in turn, the order rotated every step: the step that follows a
            # given variant was measured to run slower or faster by more than the effects compared here.
            for key in keys[step % len(keys) :] + keys[: step % len(keys)]:
                gen = gens[key][0]
                c0 = time.thread_time()
                gen.generate_next_token()
                times[key].append((time.thread_time() - c0) * 1e3)
        for gen, params in gens.values():
            gen.close()
            params.close()

    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"model set {root}; {args.batch} rows x {args.prompt} prompt tokens, {args.new_tokens} new; 1 intra-op "
        f"thread, order rotated per step; load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}; "
        f"numpy 1-thread read {bw:.1f} GB/s"
    )
    print("| slot dtype | thread CPU ms/step (sessions 1, 2) | over base ms | adapter MB/step | GB/s over base |")
    print("|---|---:|---:|---:|---:|")
    print(f"| base | {med['base']:.2f} | 0 | 0 | - |")
    for d in names:
        one, two = med[f"{d} (1)"], med[f"{d} (2)"]
        extra = (one + two) / 2 - med["base"]
        mb = nbytes[f"{d} (1)"] / 1e6
        rate = f"{mb / extra:.1f}" if extra > 0 else "-"
        print(f"| {d} | {one:.2f}, {two:.2f} | {extra:.2f} | {mb:.1f} | {rate} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
