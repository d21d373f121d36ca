"""Foundation benchmark: adapter load time, Run latency with an adapter, cost of switching the active set.

Every number is measured in this one run against ONNX Runtime's own LoRA path on the same model,
adapter files and inputs (onnxruntime.LoraAdapter + RunOptions.add_active_adapter), and printed as a
table of medians with ratios. Usage:

    python benchmarks/bench_adapters.py [--hidden 512] [--layers 4] [--rank 16] [--repeats 30]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from _timing import median_ms, paired_ms

import multilora as ml
from multilora import testing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--adapters", type=int, default=4, help="adapters loaded (switching cycles through them)")
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for both runtimes")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        modules = testing.ATTN_MODULES + testing.MLP_MODULES
        info = testing.make_lora_model(
            d / "model.onnx", layers=args.layers, hidden=args.hidden, vocab=1024, modules=modules, seed=0
        )
        paths = []
        for i in range(args.adapters):
            p = d / f"a{i}.onnx_adapter"
            ml.write_adapter(p, testing.make_adapter_params(info, rank=args.rank, seed=100 + i))
            paths.append(p)
        size_mb = paths[0].stat().st_size / 2**20
        ids = testing.make_input_ids(info, batch=1, seq=args.seq, seed=1)

        feeds = {"input_ids": ids}
        # --- both runtimes on the same model file
        model = ml.Model(d / "model.onnx", intra_op_threads=args.threads)
        adapters = ml.Adapters(model)
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(d / "model.onnx"), so, providers=["CPUExecutionProvider"])

        def ort_load(p: Path = paths[0]) -> ort.LoraAdapter:
            a = ort.LoraAdapter()
            a.Load(str(p))
            return a

        load_ours, load_ort = paired_ms(lambda: adapters.load(paths[0], "a0", replace=True), ort_load, args.repeats)
        for i, p in enumerate(paths):
            adapters.load(p, f"a{i}", replace=True)
        opts = [ml.RunOptions() for _ in paths]
        for i, o in enumerate(opts):
            o.set_active_adapters(adapters, [f"a{i}"])
        base_opts = ml.RunOptions()
        ort_adapters = [ort_load(p) for p in paths]
        ro_list = []
        for a in ort_adapters:
            ro = ort.RunOptions()
            ro.add_active_adapter(a)
            ro_list.append(ro)

        run_base_ours, run_base_ort = paired_ms(
            lambda: model.run(["logits"], feeds, base_opts), lambda: sess.run(["logits"], feeds), args.repeats
        )
        run_lora_ours, run_lora_ort = paired_ms(
            lambda: model.run(["logits"], feeds, opts[0]), lambda: sess.run(["logits"], feeds, ro_list[0]), args.repeats
        )
        k = [0, 0]

        def switch_ours() -> None:
            k[0] = (k[0] + 1) % len(opts)
            model.run(["logits"], feeds, opts[k[0]])

        def switch_ort() -> None:
            k[1] = (k[1] + 1) % len(ro_list)
            sess.run(["logits"], feeds, ro_list[k[1]])

        run_switch_ours, run_switch_ort = paired_ms(switch_ours, switch_ort, args.repeats)
        mix = ml.RunOptions()
        set_new = median_ms(
            lambda: mix.set_active_adapters(adapters, ["a0", "a1"], [1.0, 0.5 + np.random.rand()]), args.repeats
        )
        keep = ml.RunOptions()
        keep.set_active_adapters(adapters, ["a1", "a2"], [1.0, 0.5])  # holds the composite: later sets hit the cache
        set_cached = median_ms(lambda: mix.set_active_adapters(adapters, ["a1", "a2"], [1.0, 0.5]), args.repeats)
        mix.set_active_adapters(adapters, ["a0", "a1"], [1.0, 0.5])
        run_mix_ours = median_ms(lambda: model.run(["logits"], feeds, mix), args.repeats)

        # Same numbers from both paths (sanity, not timing).
        (ours,) = model.run(["logits"], feeds, opts[0])
        (theirs,) = sess.run(["logits"], feeds, ro_list[0])
        max_diff = float(np.abs(ours - theirs).max())

    rows = [
        ("adapter load (file, validate)", load_ours, load_ort),
        ("run, base model", run_base_ours, run_base_ort),
        ("run, one adapter", run_lora_ours, run_lora_ort),
        ("run, switching adapter every run", run_switch_ours, run_switch_ort),
        ("run, mix of 2 adapters (ours only)", run_mix_ours, float("nan")),
        ("set_active_adapters, new mix (builds)", set_new, float("nan")),
        ("set_active_adapters, cached mix", set_cached, float("nan")),
    ]
    print(
        f"model: {args.layers} layers, hidden {args.hidden}, {len(info.pairs)} adapted projections; "
        f"adapter rank {args.rank}, {size_mb:.2f} MiB; input [1, {args.seq}]; threads {args.threads}; "
        f"ORT {ort.__version__}; median of {args.repeats}"
    )
    print(f"{'measurement':<38} {'multilora ms':>13} {'ORT ms':>9} {'ORT/ours':>9}")
    print("-" * 72)
    for label, ours_ms, ort_ms in rows:
        ratio = ort_ms / ours_ms if ort_ms == ort_ms else float("nan")
        ort_s = f"{ort_ms:9.3f}" if ort_ms == ort_ms else f"{'-':>9}"
        ratio_s = f"{ratio:9.2f}" if ratio == ratio else f"{'-':>9}"
        print(f"{label:<38} {ours_ms:13.3f} {ort_s} {ratio_s}")
    print(f"\nmax |logits(multilora) - logits(ORT LoRA)| = {max_diff:.2e}")


if __name__ == "__main__":
    main()
