"""Generation throughput: multilora against onnxruntime-genai on the same model, adapter and prompt.

    python benchmarks/bench_generation.py                    # the committed tiny fixture (overhead-bound)
    python benchmarks/bench_generation.py --size small       # builds a 4-layer hidden-512 model set first
    python benchmarks/bench_generation.py --models DIR       # DIR/lora (+ adapters/a.onnx_adapter), DIR/base
    python benchmarks/bench_generation.py --models DIR --prepared PREP --adapter a0 --skip-genai
                                  # PREP = DIR/lora prepared by `multilora prepare-batching` (with its base graph)

Each configuration generates exactly --new tokens greedily from the same prompt (eos is held back with
min_length = max_length in both runtimes). Configurations run interleaved, --repeat times each; the table
shows the median decode rate (tokens after the first, per second of generate_next_token calls), the
prompt pass time, and the ratio multilora / onnxruntime-genai for the same model and adapter:

    lora model + adapter a           multilora vs onnxruntime-genai (og.Adapters + set_active_adapter)
    lora model, no adapter           multilora (active set cleared) vs onnxruntime-genai (no adapter)
    base model (no LoRA inputs)      multilora vs onnxruntime-genai
    cleared set vs base model        multilora on the LoRA model with no adapter / on the base model

With --prepared, two more multilora rows (no genai counterpart): the prepared copy with the set cleared, run
on its base graph (the default), and the same with the base graph disabled (base_graph=False: the LoRA graph
with its empty LoRA branch, as before the base graph existed); each against the base model is the cleared-set
cost (issue 15 target: <= 3% per token). On a busy machine whole runs drift; --step-interleaved N also steps
one generator of each of the three (base model, prepared+base graph, prepared one session) in turn, one token
each, N tokens per generator, and reports the median step-time ratios of those interleaved steps.

Both runtimes use ONNX Runtime's default threads (2 cores here) from the same onnxruntime build when
onnxruntime-genai is the one pip installed beside onnxruntime. Building a model set needs what
tests/python/fixtures/build_generation_fixtures.py needs (torch, transformers, peft, olive-ai).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "python", "fixtures", "generation")
BUILDER = os.path.join(ROOT, "tests", "python", "fixtures", "build_generation_fixtures.py")


def ensure_models(args: argparse.Namespace) -> str:
    if args.models:
        return args.models
    if args.size == "tiny":
        return FIXTURES
    out = os.path.join(ROOT, f"build-gen-bench/{args.size}")
    if not os.path.exists(os.path.join(out, "lora", "model.onnx")):
        print(f"building the {args.size} model set into {out} ...", flush=True)
        subprocess.run([sys.executable, BUILDER, "--size", args.size, "--no-references", "--out", out], check=True)
    return out


Runner = Callable[[], Tuple[float, float, int]]  # -> (prompt seconds, decode seconds, decode tokens)


def multilora_runner(
    model_dir: str, adapter: Optional[str], prompt: np.ndarray, new: int, threads: int, base_graph: bool = True
) -> Tuple[Runner, object]:
    import multilora as ml
    from multilora.generation import Generator, GeneratorParams

    model = ml.Model(model_dir, ml.ModelOptions(intra_op_threads=threads, base_graph=base_graph))
    registry = ml.Adapters(model)
    if adapter:
        registry.load(adapter, "a")
    params = GeneratorParams(model)
    total = len(prompt) + new
    params.set_search_options(max_length=total, min_length=total, do_sample=False)
    if adapter:
        params.set_active_adapters(registry, ["a"])

    def run() -> Tuple[float, float, int]:
        gen = Generator(model, params)
        t0 = time.perf_counter()
        gen.append_tokens(prompt)
        gen.generate_next_token()  # first token: from the prompt pass's logits
        t1 = time.perf_counter()
        n = 0
        while not gen.is_done():
            gen.generate_next_token()
            n += 1
        t2 = time.perf_counter()
        assert len(gen.get_sequence(0)) == total
        gen.close()
        return t1 - t0, t2 - t1, n

    return run, (model, registry, params)


def genai_runner(
    model_dir: str, adapter: Optional[str], prompt: np.ndarray, new: int, threads: int
) -> Tuple[Runner, object]:
    import json

    import onnxruntime_genai as og

    config = og.Config(model_dir)
    if threads:
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
    model = og.Model(config)
    adapters = og.Adapters(model)
    if adapter:
        adapters.load(adapter, "a")
    total = len(prompt) + new
    batch_prompt = prompt.reshape(1, -1)

    def run() -> Tuple[float, float, int]:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=total, min_length=total, do_sample=False)
        gen = og.Generator(model, params)
        if adapter:
            gen.set_active_adapter(adapters, "a")
        t0 = time.perf_counter()
        gen.append_tokens(batch_prompt)
        gen.generate_next_token()
        t1 = time.perf_counter()
        n = 0
        while not gen.is_done():
            gen.generate_next_token()
            n += 1
        t2 = time.perf_counter()
        produced = len(gen.get_sequence(0))
        assert produced == total, (produced, total)
        del gen
        return t1 - t0, t2 - t1, n

    return run, (model, adapters)


def step_interleaved(base: str, prepared: str, prompt: np.ndarray, steps: int, threads: int, batch: int) -> None:
    """One decode step of each generator in turn (base model; prepared copy, cleared, base graph; the same with
    base_graph=False), `steps` steps each; prints the median per-step time ratios."""
    import multilora as ml
    from multilora.generation import Generator, GeneratorParams

    gens = {}
    keep = []
    for key, path, use in (("base", base, True), ("base graph", prepared, True), ("one session", prepared, False)):
        model = ml.Model(path, ml.ModelOptions(intra_op_threads=threads, base_graph=use))
        params = GeneratorParams(model)
        total = len(prompt) + steps + 1
        params.set_search_options(batch_size=batch, max_length=total, min_length=total, do_sample=False)
        gen = Generator(model, params)
        gen.append_tokens([prompt.tolist()] * batch if batch > 1 else prompt)
        gen.generate_next_token()
        gens[key] = gen
        keep += [model, params]
    times: Dict[str, List[float]] = {k: [] for k in gens}
    load0 = os.getloadavg()[0]
    for _ in range(steps):
        for key, gen in gens.items():
            t = time.perf_counter()
            gen.generate_next_token()
            times[key].append(time.perf_counter() - t)
    med = {k: statistics.median(v[2:]) * 1e3 for k, v in times.items()}
    print(
        f"step-interleaved, batch {batch}, {steps} steps each (load average {load0:.2f} -> "
        f"{os.getloadavg()[0]:.2f}): base model {med['base']:.2f} ms, prepared+cleared on the base graph "
        f"{med['base graph']:.2f} ms ({med['base graph'] / med['base']:.3f}x), one session "
        f"{med['one session']:.2f} ms ({med['one session'] / med['base']:.3f}x)"
    )
    for g in gens.values():
        g.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["tiny", "small"], default="tiny")
    ap.add_argument("--models", help="a folder with lora/ (adapters/a.onnx_adapter inside) and base/")
    ap.add_argument("--prepared", help="DIR/lora prepared by `multilora prepare-batching` (cleared-set rows)")
    ap.add_argument("--adapter", default="a", help="the adapter file lora/adapters/<name>.onnx_adapter")
    ap.add_argument("--skip-genai", action="store_true", help="multilora rows only")
    ap.add_argument(
        "--step-interleaved", type=int, default=0, help="with --prepared: tokens per generator, stepped in turn"
    )
    ap.add_argument("--batch", type=int, default=1, help="with --step-interleaved: sequences per generator")
    ap.add_argument("--new", type=int, default=48, help="tokens to generate per run")
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="ONNX Runtime intra-op threads for both runtimes (0 = ONNX Runtime's default)",
    )
    args = ap.parse_args()

    root = ensure_models(args)
    lora, base = os.path.join(root, "lora"), os.path.join(root, "base")
    adapter = os.path.join(lora, "adapters", f"{args.adapter}.onnx_adapter")
    import json

    cfg = json.load(open(os.path.join(lora, "genai_config.json")))["model"]
    context = int(cfg["context_length"])
    if args.prompt_len + args.new > context:
        args.new = context - args.prompt_len
    rng = np.random.default_rng(0)
    prompt = rng.integers(4, int(cfg["vocab_size"]), size=args.prompt_len).astype(np.int32)

    configs: Dict[str, Runner] = {}
    keep: List[object] = []
    plan = [
        ("ml lora+a", multilora_runner, lora, adapter),
        ("og lora+a", genai_runner, lora, adapter),
        ("ml lora", multilora_runner, lora, None),
        ("og lora", genai_runner, lora, None),
        ("ml base", multilora_runner, base, None),
        ("og base", genai_runner, base, None),
    ]
    if args.skip_genai:
        plan = [p for p in plan if not p[0].startswith("og")]
    if args.prepared:
        plan += [("ml prepared", multilora_runner, args.prepared, None)]
        plan += [("ml prepared 1s", lambda *a: multilora_runner(*a, base_graph=False), args.prepared, None)]
    for key, fn, model_dir, ad in plan:
        run, held = fn(model_dir, ad, prompt, args.new, args.threads)
        configs[key] = run
        keep.append(held)

    results: Dict[str, List[Tuple[float, float, int]]] = {k: [] for k in configs}
    for i in range(args.warmup + args.repeat):
        for key, run in configs.items():  # interleaved: drifts in machine load hit every config alike
            r = run()
            if i >= args.warmup:
                results[key].append(r)

    def decode_rate(key: str) -> float:
        return statistics.median(n / d for _, d, n in results[key])

    def prompt_ms(key: str) -> float:
        return statistics.median(p for p, _, _ in results[key]) * 1e3

    print()
    print(
        f"model set {root}: {cfg.get('type', '?')}, {cfg['decoder']['num_hidden_layers']} layers, hidden "
        f"{cfg['decoder']['hidden_size']}, vocab {cfg['vocab_size']}; prompt {args.prompt_len} tokens, "
        f"{args.new} new tokens, greedy; intra-op threads {args.threads or 'default'}; median of "
        f"{args.repeat} runs"
    )
    import onnxruntime

    import multilora as ml

    print(f"onnxruntime {onnxruntime.__version__}, multilora {ml.__version__} (ORT {ml.ort_info().version})")
    print()
    header = (
        f"{'configuration':<34}{'multilora tok/s':>17}{'genai tok/s':>13}{'ratio':>8}"
        f"{'ml prompt ms':>14}{'og prompt ms':>14}"
    )
    print(header)
    print("-" * len(header))
    rows = [
        ("lora model + adapter a", "ml lora+a", "og lora+a"),
        ("lora model, no adapter", "ml lora", "og lora"),
        ("base model (no LoRA inputs)", "ml base", "og base"),
    ]
    for label, mk, ok in rows:
        m = decode_rate(mk)
        if ok not in results:
            print(f"{label:<34}{m:>17.1f}{'-':>13}{'-':>8}{prompt_ms(mk):>14.2f}{'-':>14}")
            continue
        o = decode_rate(ok)
        print(f"{label:<34}{m:>17.1f}{o:>13.1f}{m / o:>8.2f}{prompt_ms(mk):>14.2f}{prompt_ms(ok):>14.2f}")
    print()
    cleared, plain = decode_rate("ml lora"), decode_rate("ml base")
    print(
        f"multilora, LoRA model with the set cleared vs the model without LoRA inputs: "
        f"{cleared:.1f} vs {plain:.1f} tok/s (ratio {cleared / plain:.2f})"
    )
    if args.prepared:
        for key, what in (("ml prepared", "base graph"), ("ml prepared 1s", "one session, base_graph=False")):
            r = decode_rate(key)
            print(
                f"multilora, prepared copy with the set cleared ({what}) vs the model without LoRA inputs: "
                f"{r:.1f} vs {plain:.1f} tok/s (per-token time ratio {plain / r:.3f})"
            )
    if args.prepared and args.step_interleaved:
        step_interleaved(base, args.prepared, prompt, args.step_interleaved, args.threads, args.batch)
    withad = decode_rate("ml lora+a")
    print(
        f"multilora, adapter a vs cleared set on the LoRA model: {withad:.1f} vs {cleared:.1f} tok/s "
        f"(ratio {withad / cleared:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
