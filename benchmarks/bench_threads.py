"""ONNX Runtime thread policy with two sessions per model (the LoRA graph and its base graph).

A model prepared by ``multilora prepare-batching`` runs its base graph (a second session) whenever no row
has an adapter, so a generator or engine may alternate two sessions step by step. With a pool per session,
the idle workers of the session that just ran may still spin while the other session's workers want the
cores. This compares the process-wide policies of ``multilora.set_global_threads``:

  per-session/spin   a pool per session, idle workers spin (ONNX Runtime's default)
  per-session/sleep  a pool per session, no spinning
  global/spin        one global intra-op pool shared by every session, spinning (multilora's default)
  global/sleep       one global pool, no spinning

Each policy runs in its own process (the policy is fixed when the first model is created); the processes are
interleaved round by round, and each reports median decode step times of a greedy generator over the
prepared bench model for four workloads:

  alternate  batch 1, the adapter set and a cleared set alternating every step (two sessions in turn)
  lora       batch 1, one adapter set every step (the LoRA session only)
  base       batch 1, no adapter (the base session only)
  per-row    batch 16, a different adapter per row (the fused kernel's work split over the pool)

and the process's CPU share during the per-row steps (CPU time / wall time), which shows whether the
custom op's work is spread over the pool's threads.

    python benchmarks/bench_threads.py MODEL_FOLDER [--rounds 3] [--steps 24]

MODEL_FOLDER: a GenAI folder prepared with ``multilora prepare-batching`` (with its base graph) holding
``adapters/*.onnx_adapter`` (e.g. the ``batched-fused`` folder of ``build_llm_bench_model.py``'s set, prepared
again with this version).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List

POLICIES = {
    "per-session/spin": (-1, True),
    "per-session/sleep": (-1, False),
    "global/spin": (0, True),
    "global/sleep": (0, False),
    "global/sleep/1": (1, False),  # one thread: how much the pool's second thread gives (the fused kernel too)
}


def child(folder: str, policy: str, steps: int) -> Dict[str, float]:
    import numpy as np

    import multilora as ml
    from multilora.generation import Generator, GeneratorParams

    threads, spin = POLICIES[policy]
    ml.set_global_threads(threads, spin)
    model = ml.Model(folder)
    reg = ml.Adapters(model)
    paths = sorted(glob.glob(os.path.join(folder, "adapters", "*.onnx_adapter")))[:16]
    names = []
    for i, p in enumerate(paths):
        reg.load(p, f"a{i}")
        names.append(f"a{i}")
    rng = np.random.default_rng(0)
    prompt = rng.integers(100, 20000, size=16).astype(np.int32)

    def decode(batch: int, schedule) -> List[float]:  # schedule(step) -> None | [name] | [[names] per row]
        with GeneratorParams(model) as params:
            total = len(prompt) + steps + 1
            params.set_search_options(batch_size=batch, max_length=total, min_length=total)
            with Generator(model, params) as gen:
                gen.append_tokens([prompt.tolist()] * batch if batch > 1 else prompt)
                times = []
                for step in range(steps):
                    sel = schedule(step)
                    if sel is None:
                        gen.clear_active_adapters()
                    elif batch > 1:
                        gen.set_active_adapters_per_row(reg, sel)
                    else:
                        gen.set_active_adapters(reg, sel)
                    t = time.perf_counter()
                    gen.generate_next_token()
                    times.append(time.perf_counter() - t)
                return times[2:]  # the first steps warm up

    out: Dict[str, float] = {}
    out["alternate"] = statistics.median(decode(1, lambda s: None if s % 2 else [names[0]])) * 1e3
    out["lora"] = statistics.median(decode(1, lambda s: [names[0]])) * 1e3
    out["base"] = statistics.median(decode(1, lambda s: None)) * 1e3
    c0, w0 = time.process_time(), time.perf_counter()
    rows = [[n] for n in names] + [[]] * (16 - len(names))
    out["per-row"] = statistics.median(decode(16, lambda s: rows)) * 1e3
    out["per-row cpu"] = (time.process_time() - c0) / (time.perf_counter() - w0)
    runs = model.session_runs
    out["lora runs"], out["base runs"] = runs.lora, runs.base
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.folder, args.child, args.steps)))
        return 0
    results: Dict[str, List[Dict[str, float]]] = {p: [] for p in POLICIES}
    loads = []
    for _ in range(args.rounds):
        for policy in POLICIES:
            cmd = [sys.executable, __file__, args.folder, "--steps", str(args.steps), "--child", policy]
            res = subprocess.run(cmd, check=True, capture_output=True, text=True)
            results[policy].append(json.loads(res.stdout.strip().splitlines()[-1]))
            loads.append(os.getloadavg()[0])
    keys = ["alternate", "lora", "base", "per-row", "per-row cpu"]
    print(
        f"median decode step (ms) over {args.rounds} interleaved rounds; load average during the runs "
        f"{min(loads):.2f}..{max(loads):.2f} on {os.cpu_count()} CPUs"
    )
    print(f"{'policy':<20}" + "".join(f"{k:>13}" for k in keys) + "   alternate/mean(lora,base)")
    for policy, runs in results.items():
        med = {k: statistics.median(x[k] for x in runs) for k in keys}
        ratio = med["alternate"] / ((med["lora"] + med["base"]) / 2)
        print(f"{policy:<20}" + "".join(f"{med[k]:>13.2f}" for k in keys) + f"   {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
