"""Adapter-aware batching on a ~100M-parameter Llama-like model: a batch of sequences, each with its own adapter.

Model set (built once by ``build_llm_bench_model.py`` into ``build-bench-llm/<dims>/``, then reused): a random
fp32 ``LlamaForCausalLM`` (default hidden 768, 12 layers, intermediate 2048, 12 heads of 64, 4 KV heads,
vocabulary 32000, untied embeddings: 124.7M parameters) through ONNX Runtime GenAI's builder, and ``batch``
distinct rank-16 PEFT adapters on q/k/v/o/gate/up/down. All variants decode the same batch: ``batch`` prompts
of ``prompt`` random token ids (seeded), ``new-tokens`` tokens each, greedy, eos held back:

  (a) ORT's own LoRA path: ``onnxruntime.InferenceSession`` on the LoRA model, a greedy loop with a growing
      KV cache, ``onnxruntime.LoraAdapter`` + ``RunOptions.add_active_adapter``: one Run per adapter
      (= per sequence, batch 1) per step, the sequences stepped round-robin;
  (b) onnxruntime-genai: one ``og.Generator`` per adapter (``og.Adapters`` + ``set_active_adapter``),
      stepped round-robin;
  (c) the base model (no LoRA inputs), the whole batch in one generator: multilora and onnxruntime-genai;
  (d) ours: the LoRA model rewritten by ``multilora prepare-batching`` (``--kernel``), one multilora
      generator over the batch, ``GeneratorParams.set_active_adapters_per_row`` (row i uses adapter i);
      per ``--half-dtypes`` entry (default float16) also the fused kernel with 16-bit slots
      (``--lora-dtype``) fed the adapters rounded to that dtype (``adapters-<dtype>/``: exact w.r.t. those
      files; their greedy tokens are compared with (a)'s float32 adapters and the agreement reported); ``int8``
      in that list: int8 block-scaled slots (``--lora-dtype int8``) fed the float32 adapters, quantized on load.

Timing: "setup" makes the generators and activates the adapters; "prefill" is the prompt pass and the first
token (``append_tokens`` + the first ``generate_next_token``; for (a) the prompt Run of every sequence);
"decode" is the remaining ``new-tokens - 1`` steps, each one token for every sequence, so
decode tok/s = batch * (new-tokens - 1) / decode seconds. Medians over ``--repeats`` runs, interleaved
(after one short warm-up run per variant); the fastest run and the CPU share (process CPU time / (wall
time x threads)) are shown too, since other processes on a shared machine can slow whole runs. The
correctness guard checks that every row of (d) has the greedy tokens of (a) for its adapter. The
memory-bandwidth bound is the bytes one decode step must read (weights of every layer and lm_head, not the
embedding table; for (d) also the adapters; plus the KV cache at the middle of decoding) over the read
bandwidth measured here (numpy sums over a 1 GiB float32 array).

``--step-interleaved N``: afterwards, every multilora variant ((d) and (c)) gets one generator past its prompt
pass, all alive at once, and they take one decode step each in turn, N times; medians per variant and their
ratio to (c), and for each (d) variant also to a generator of the same model with no adapter (its base graph:
same weights, same process; the adapter read rate there is over that step). On a host whose speed drifts
over seconds (a shared VM: numpy's matmul time varied ±15% between seconds here), run-level interleaving
leaves whole 32-token runs on one side of a drift; step-level does not.

    /tmp/venv-bench/bin/python benchmarks/bench_batching_llm.py [--tiny] [--threads 2] [--repeats 2]

``--precision int4 [--int4-lora quantized|excluded]``: the same on the builder's int4 model (see
build_llm_bench_model.py); (c) is then the int4 base model, so (d)/(c) is per-row vs base on int4.

Needs multilora (with per-row generation), onnxruntime, onnxruntime-genai and onnx; building the model set
also needs torch, transformers, peft and olive-ai (run with ``--build-python`` if they live elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from build_llm_bench_model import add_dims, apply_tiny, default_out, slot_bytes  # noqa: E402


class Result(NamedTuple):
    setup_s: float
    prefill_s: float
    decode_s: float
    decode_cpu_s: float  # CPU time of the whole process (every thread) during decode
    steps: int  # decode steps (each one token per sequence)
    tokens: np.ndarray  # int64 [batch, new tokens]


Runner = Callable[[int], Result]  # new tokens -> result


def ensure_models(args: argparse.Namespace) -> Tuple[str, Dict[str, float]]:
    """Runs build_llm_bench_model.py (each step is skipped when its output is there; the batched models are
    remade when the installed prepare_batching.py changed); returns the folder and the recorded build times."""
    args.adapters = args.batch  # one distinct adapter per sequence
    out = os.path.abspath(args.models or default_out(args))
    cmd = [args.build_python, os.path.join(HERE, "build_llm_bench_model.py"), "--out", out]
    for name in ("hidden", "layers", "intermediate", "vocab", "head_dim", "kv_heads", "rank", "alpha", "context"):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    cmd += ["--half-dtypes", args.half_dtypes]
    cmd += ["--adapters", str(args.adapters), "--precision", args.precision, "--int4-lora", args.int4_lora]
    subprocess.run(cmd, check=True)
    timings: Dict[str, float] = {}
    record = os.path.join(out, "build.json")
    if os.path.exists(record):
        with open(record) as f:
            timings = json.load(f).get("timings", {})
    return out, timings


# ---- memory bandwidth and model bytes -------------------------------------------------------------------


def read_bandwidth(gib: float, threads: int, repeats: int = 5) -> float:
    """Best read GB/s (1e9 bytes/s) of numpy sums over a ``gib`` GiB float32 array split among ``threads``."""
    a = np.ones(int(gib * (1 << 30)) // 4, dtype=np.float32)
    parts = np.array_split(a, threads)
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            list(pool.map(np.sum, parts))  # numpy releases the GIL inside the reduction
            best = min(best, time.perf_counter() - t0)
    return a.nbytes / best / 1e9


def matmul_gflops(threads: int, n: int = 2048, repeats: int = 3) -> float:
    """Best fp32 GFLOP/s of a numpy n x n x n matmul (numpy's BLAS, its own thread count)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        np.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def model_bytes(folder: str) -> Tuple[int, int, int]:
    """(parameters, all initializer bytes, embedding-table bytes) of an ONNX model (weights not loaded)."""
    import onnx
    from onnx import helper

    m = onnx.load(os.path.join(folder, "model.onnx"), load_external_data=False)
    sizes: Dict[str, Tuple[int, int]] = {}
    for t in m.graph.initializer:
        n = int(np.prod(t.dims)) if len(t.dims) else 1
        sizes[t.name] = (n, n * np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize)
    embed = 0
    for node in m.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[1] == "input_ids":
            embed += sizes.get(node.input[0], (0, 0))[1]
    params = sum(n for n, _ in sizes.values() if n > 1)
    return params, sum(b for _, b in sizes.values()), embed


def adapter_bytes(path: str) -> int:
    """Bytes a per-row step reads for the adapter: float32 for quantized files (multilora dequantizes them into
    the slots of a prepared model: A [blocks*block, r] from weight [r, blocks, bytes], B [r, out])."""
    import multilora as ml

    params = ml.read_adapter(path).parameters
    quantized = {k: v for k, v in params.items() if k.endswith("_Q4")}
    if not quantized:
        return sum(np.asarray(v).nbytes for v in params.values())
    rank = max(v.shape[0] for k, v in quantized.items() if ".lora_A." in k)
    total = 0
    for k, v in quantized.items():
        total += 4 * (v.shape[0] * v.shape[1] * v.shape[2] * 2 if ".lora_A." in k else rank * v.shape[0])
    return total


# ---- (a) ORT's own LoRA path ----------------------------------------------------------------------------


def ort_runner(lora: str, adapters: List[str], prompts: np.ndarray, threads: int) -> Tuple[Runner, object]:
    import onnx
    import onnxruntime as ort

    cfg = json.load(open(os.path.join(lora, "genai_config.json")))["model"]["decoder"]
    layers, kv_heads, head = cfg["num_hidden_layers"], cfg["num_key_value_heads"], cfg["head_size"]
    proto = onnx.load(os.path.join(lora, "model.onnx"))
    seen, keep = set(), []
    for i in proto.graph.input:  # the extracted model lists every LoRA input twice
        if i.name not in seen:
            seen.add(i.name)
            keep.append(i)
    del proto.graph.input[:]
    proto.graph.input.extend(keep)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # the extracted model keeps initializers among the inputs: ORT warns
    session = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    del proto
    outputs = [o.name for o in session.get_outputs()]
    present = [
        (i, n.replace("present.", "past_key_values.")) for i, n in enumerate(outputs) if n.startswith("present.")
    ]
    logits_at = outputs.index("logits")
    loaded = []
    for path in adapters:
        a = ort.LoraAdapter()
        a.Load(path)
        loaded.append(a)
    batch, plen = prompts.shape

    def run(new: int) -> Result:
        t0 = time.perf_counter()
        ros = []
        for a in loaded:
            ro = ort.RunOptions()
            ro.add_active_adapter(a)
            ros.append(ro)
        empty = ort.OrtValue.ortvalue_from_numpy(np.zeros((1, kv_heads, 0, head), np.float32))
        first = {f"past_key_values.{la}.{kv}": empty for la in range(layers) for kv in ("key", "value")}
        pasts = [first] * batch  # replaced row by row, never changed in place
        tokens = np.zeros((batch, new), np.int64)
        t1 = time.perf_counter()

        def step(row: int, ids: np.ndarray, total: int, k: int) -> None:
            # OrtValues in and out: the KV cache goes back in without a copy through numpy.
            feeds = {
                "input_ids": ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(ids)),
                "attention_mask": ort.OrtValue.ortvalue_from_numpy(np.ones((1, total), np.int64)),
                **pasts[row],
            }
            outs = session.run_with_ort_values(outputs, feeds, ros[row])
            pasts[row] = {name: outs[i] for i, name in present}
            tokens[row, k] = int(np.argmax(outs[logits_at].numpy()[0, -1]))

        for row in range(batch):
            step(row, prompts[row : row + 1].astype(np.int64), plen, 0)
        t2, c2 = time.perf_counter(), time.process_time()
        for k in range(1, new):
            for row in range(batch):
                step(row, tokens[row : row + 1, k - 1 : k], plen + k, k)
        t3, c3 = time.perf_counter(), time.process_time()
        return Result(t1 - t0, t2 - t1, t3 - t2, c3 - c2, new - 1, tokens)

    return run, (session, loaded)


# ---- (b) onnxruntime-genai, (c) the base model --------------------------------------------------------------


def genai_model(folder: str, threads: int) -> object:
    import onnxruntime_genai as og

    config = og.Config(folder)
    options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
    config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
    return og.Model(config)


def genai_per_adapter_runner(
    lora: str, adapters: List[str], prompts: np.ndarray, threads: int
) -> Tuple[Runner, object]:
    import onnxruntime_genai as og

    model = genai_model(lora, threads)
    registry = og.Adapters(model)
    for i, path in enumerate(adapters):
        registry.load(path, f"a{i}")
    batch, plen = prompts.shape

    def run(new: int) -> Result:
        t0 = time.perf_counter()
        gens = []
        for i in range(batch):
            params = og.GeneratorParams(model)
            params.set_search_options(max_length=plen + new, min_length=plen + new, do_sample=False)
            gen = og.Generator(model, params)
            gen.set_active_adapter(registry, f"a{i}")
            gens.append(gen)
        t1 = time.perf_counter()
        for i, gen in enumerate(gens):
            gen.append_tokens(prompts[i : i + 1])
            gen.generate_next_token()
        t2, c2 = time.perf_counter(), time.process_time()
        for _ in range(new - 1):
            for gen in gens:
                gen.generate_next_token()
        t3, c3 = time.perf_counter(), time.process_time()
        tokens = np.array([np.asarray(g.get_sequence(0))[plen:] for g in gens], np.int64)
        del gens
        return Result(t1 - t0, t2 - t1, t3 - t2, c3 - c2, new - 1, tokens)

    return run, (model, registry)


def timed_generation(gen: Any, prompts: np.ndarray, new: int, t0: float) -> Result:
    """Runs a batch generator (onnxruntime-genai's or multilora's: same method names) for `new` tokens; setup
    is timed from t0, prefill = prompt pass + first token, decode = the rest."""
    batch, plen = prompts.shape
    t1 = time.perf_counter()
    gen.append_tokens(prompts)
    gen.generate_next_token()
    t2, c2 = time.perf_counter(), time.process_time()
    for _ in range(new - 1):
        gen.generate_next_token()
    t3, c3 = time.perf_counter(), time.process_time()
    tokens = np.array([np.asarray(gen.get_sequence(i))[plen:] for i in range(batch)], np.int64)
    return Result(t1 - t0, t2 - t1, t3 - t2, c3 - c2, new - 1, tokens)


def genai_batch_runner(folder: str, prompts: np.ndarray, threads: int) -> Tuple[Runner, object]:
    import onnxruntime_genai as og

    model = genai_model(folder, threads)
    batch, plen = prompts.shape

    def run(new: int) -> Result:
        t0 = time.perf_counter()
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=plen + new, min_length=plen + new, do_sample=False, batch_size=batch)
        gen = og.Generator(model, params)
        result = timed_generation(gen, prompts, new, t0)
        del gen
        return result

    return run, model


# ---- multilora: (c) the base model, (d) per-row adapters ----------------------------------------------------


def multilora_runner(
    folder: str, adapters: Optional[List[str]], prompts: np.ndarray, one_adapter: bool = False
) -> Tuple[Runner, object]:
    """Row i uses adapter i (``one_adapter``: every row uses adapter 0); no adapters = the base model."""
    import multilora as ml

    # The process-wide pool main() sized (multilora's default policy): with a spinning pool per model, the
    # step-interleaved phase's idle models held the cores (every step took twice as long).
    model = ml.Model(folder)
    registry = ml.Adapters(model)
    rows = []
    for i, path in enumerate(adapters or []):
        registry.load(path, f"a{i}")
        rows.append(["a0" if one_adapter else f"a{i}"])
    batch, plen = prompts.shape

    def run(new: int) -> Result:
        t0 = time.perf_counter()
        params = ml.GeneratorParams(model)
        params.set_search_options(max_length=plen + new, min_length=plen + new, do_sample=False, batch_size=batch)
        if rows:
            params.set_active_adapters_per_row(registry, rows)
        gen = ml.Generator(model, params)
        result = timed_generation(gen, prompts, new, t0)
        gen.close()
        params.close()
        return result

    steppers[run] = lambda steps: multilora_stepper(model, registry, rows, prompts, steps)
    if rows:  # the same model with no adapter: its base graph, the same weights in the same process
        cleared_steppers[run] = lambda steps: multilora_stepper(model, registry, [], prompts, steps)
    return run, (model, registry)


# Per multilora runner: a factory of a generator past its prompt pass (--step-interleaved).
Stepper = Tuple[Callable[[], float], Callable[[], None]]
steppers: Dict[Runner, Callable[[int], Stepper]] = {}
cleared_steppers: Dict[Runner, Callable[[int], Stepper]] = {}


def multilora_stepper(model: Any, registry: Any, rows: List[List[str]], prompts: np.ndarray, steps: int) -> Stepper:
    """A generator of the runner's model and rows, its prompt pass and first token done: step() times one decode
    step (ms); close() ends it."""
    import multilora as ml

    batch, plen = prompts.shape
    params = ml.GeneratorParams(model)
    total = plen + steps + 2
    params.set_search_options(max_length=total, min_length=total, do_sample=False, batch_size=batch)
    if rows:
        params.set_active_adapters_per_row(registry, rows)
    gen = ml.Generator(model, params)
    gen.append_tokens(prompts)
    gen.generate_next_token()

    def step() -> float:
        t = time.perf_counter()
        gen.generate_next_token()
        return (time.perf_counter() - t) * 1e3

    def close() -> None:
        gen.close()
        params.close()

    return step, close


def step_interleaved(variants: Dict[str, Runner], labels: Dict[str, str], steps: int, rate: Callable) -> None:
    """Every multilora variant's generator alive at once, stepped one decode step each in turn, `steps` times:
    slow drifts of a shared machine (seconds) hit every variant alike, which run-level interleaving does not
    guarantee. Prints each variant's median step and its ratio to the base model's, and for each per-row
    variant also to a generator of the same model with no adapter (its base graph: the same weights, in the
    same process, without the base model's separate session)."""
    keys = [k for k in variants if variants[k] in steppers]
    if "c-ml" not in keys:
        return
    made = {k: steppers[variants[k]](steps) for k in keys}
    made.update({k + "/cleared": cleared_steppers[variants[k]](steps) for k in keys if variants[k] in cleared_steppers})
    times: Dict[str, List[float]] = {k: [] for k in made}
    load0 = os.getloadavg()[0]
    for _ in range(steps):
        for k in made:
            times[k].append(made[k][0]())
    load1 = os.getloadavg()[0]
    for k in made:
        made[k][1]()
    med = {k: statistics.median(v[2:]) for k, v in times.items()}  # the first steps warm up
    print()
    print(
        f"step-interleaved: {len(made)} generators alive, one decode step each in turn, {steps} steps (median of the "
        f"last {steps - 2}); load average {load0:.2f} -> {load1:.2f}"
    )
    head = "| variant | decode ms/step | base / this | same model cleared ms/step | cleared / this | adapter GB/s (%) |"
    print(head)
    print("|---|---:|---:|---:|---:|---:|")
    for k in keys:
        own = med.get(k + "/cleared")
        own_cols = f"{own:.2f} | {own / med[k]:.3f}" if own else "- | -"
        extra = med[k] - (own or med["c-ml"])  # over the same model's cleared step where there is one
        print(f"| {labels[k]} | {med[k]:.2f} | {med['c-ml'] / med[k]:.3f} | {own_cols} | {rate(k, extra)} |")


# ---- main ------------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dims(ap)
    ap.add_argument("--batch", type=int, default=16, help="sequences, each with its own adapter")
    ap.add_argument("--prompt", type=int, default=128, help="prompt tokens per sequence")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads for every variant")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--kernel", choices=["fused", "gather", "both"], default="both", help="prepare-batching kernel")
    ap.add_argument("--skip-genai", action="store_true", help="leave out the onnxruntime-genai variants")
    ap.add_argument("--skip-ort", action="store_true", help="leave out (a) (and the correctness guard)")
    ap.add_argument(
        "--one-adapter",
        action="store_true",
        help="add a diagnostic row: (d) with every row on adapter a0 (adapter bytes read once, not batch times)",
    )
    ap.add_argument("--bandwidth-gib", type=float, default=1.0, help="array size of the bandwidth measurement")
    ap.add_argument("--models", help="model set folder (default build-bench-llm/<dims>)")
    ap.add_argument("--build-python", default=sys.executable, help="python with torch/transformers/peft/olive")
    ap.add_argument(
        "--step-interleaved",
        type=int,
        default=0,
        metavar="N",
        help="then also step every multilora variant's generator in turn, one decode step each, N times",
    )
    args = ap.parse_args()
    apply_tiny(args)
    if args.new_tokens < 2:
        ap.error("--new-tokens must be >= 2 (one prefill token, then decode steps)")

    root, build_times = ensure_models(args)
    lora, base = os.path.join(root, "lora"), os.path.join(root, "base")
    kernels = ["fused", "gather"] if args.kernel == "both" else [args.kernel]
    missing = [k for k in kernels if not os.path.exists(os.path.join(root, f"batched-{k}", "model.onnx"))]
    if missing:  # an older multilora's prepare-batching has no --kernel and makes batched-gather only
        print(f"note: no batched model for kernel(s) {', '.join(missing)} (installed prepare-batching lacks them)")
        kernels = [k for k in kernels if k not in missing]
    adapters = [os.path.join(lora, "adapters", f"a{i}.onnx_adapter") for i in range(args.batch)]
    halves = [
        dt
        for dt in args.half_dtypes.split(",")
        if dt and "fused" in kernels and os.path.exists(os.path.join(root, f"batched-fused-{dt}", "model.onnx"))
    ]
    # The quantized int4 form keeps its 4-bit files: a prepared model dequantizes them into its slots' dtype.
    quantized = args.precision == "int4" and args.int4_lora == "quantized"
    half_adapters = {
        dt: adapters
        if quantized or dt == "int8"
        else [os.path.join(root, f"adapters-{dt}", f"a{i}.onnx_adapter") for i in range(args.batch)]
        for dt in halves
    }
    cfg = json.load(open(os.path.join(base, "genai_config.json")))["model"]
    dec = cfg["decoder"]
    vocab = int(cfg["vocab_size"])
    rng = np.random.default_rng(1)
    prompts = rng.integers(4, vocab, size=(args.batch, args.prompt)).astype(np.int32)

    import onnxruntime as ort

    import multilora as ml

    ml.set_global_threads(args.threads, True)  # every multilora model shares one pool of --threads threads
    if not hasattr(ml.GeneratorParams, "set_active_adapters_per_row"):
        print("note: the installed multilora has no GeneratorParams.set_active_adapters_per_row: (d) not measured")
        kernels = []

    # Bandwidth first, with nothing else loaded.
    bw1 = read_bandwidth(args.bandwidth_gib, 1)
    bwn = read_bandwidth(args.bandwidth_gib, args.threads) if args.threads > 1 else bw1
    gflops = matmul_gflops(args.threads)

    variants: Dict[str, Runner] = {}
    labels: Dict[str, str] = {}
    keep: List[object] = []
    b = args.batch

    def add(key: str, label: str, made: Tuple[Runner, object]) -> None:
        variants[key], labels[key] = made[0], label
        keep.append(made[1])

    for k in kernels:
        add(
            f"d-{k}",
            f"(d) multilora per-row, {k} kernel, 1 generator x batch {b}",
            multilora_runner(os.path.join(root, f"batched-{k}"), adapters, prompts),
        )
    for dt in halves:
        add(
            f"d-fused-{dt}",
            f"(d) multilora per-row, fused kernel, {dt} slots + "
            + (
                ("int4 adapters (held exactly: int8 = q - zero point)" if quantized else "float32 adapters (quantized)")
                if dt == "int8"
                else f"{dt} adapters"
            ),
            multilora_runner(os.path.join(root, f"batched-fused-{dt}"), half_adapters[dt], prompts),
        )
    if args.one_adapter and kernels:
        add(
            "d1",
            f"(d, diagnostic) {kernels[0]} kernel, every row on adapter a0",
            multilora_runner(os.path.join(root, f"batched-{kernels[0]}"), adapters, prompts, True),
        )
    add("c-ml", f"(c) base model, multilora, batch {b}", multilora_runner(base, None, prompts))
    if not args.skip_genai:
        add("c-og", f"(c) base model, onnxruntime-genai, batch {b}", genai_batch_runner(base, prompts, args.threads))
    if not args.skip_ort:
        add(
            "a",
            f"(a) ORT LoRA path, {b} Runs (batch 1) per step",
            ort_runner(lora, adapters, prompts, args.threads),
        )
    if not args.skip_genai:
        add(
            "b",
            f"(b) onnxruntime-genai, {b} generators (batch 1)",
            genai_per_adapter_runner(lora, adapters, prompts, args.threads),
        )

    for run in variants.values():  # warm-up: the prompt pass and one decode step
        run(2)
    results: Dict[str, List[Result]] = {k: [] for k in variants}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for key, run in variants.items():  # interleaved: drifts in machine load hit every variant alike
            results[key].append(run(args.new_tokens))
            r = results[key][-1]
            share = r.decode_cpu_s / (r.decode_s * args.threads)
            print(f"  {key}: decode {r.decode_s:.2f} s, CPU share {share:.2f}", file=sys.stderr, flush=True)

    load_after = os.getloadavg()[0]

    def med(key: str, field: str) -> float:
        return statistics.median(getattr(r, field) for r in results[key])

    def step_ms(key: str) -> float:
        return med(key, "decode_s") * 1e3 / (args.new_tokens - 1)

    def best_step_ms(key: str) -> float:
        return min(r.decode_s for r in results[key]) * 1e3 / (args.new_tokens - 1)

    def cpu_share(key: str) -> float:
        return statistics.median(r.decode_cpu_s / (r.decode_s * args.threads) for r in results[key])

    def tok_s(key: str) -> float:
        return args.batch * (args.new_tokens - 1) / med(key, "decode_s")

    def best_ratio(ours: str, other: str) -> float:
        return best_step_ms(other) / best_step_ms(ours)

    # ---- report --------------------------------------------------------------------------------------------
    params, init_bytes, embed_bytes = model_bytes(base)
    weights_step = init_bytes - embed_bytes
    one_adapter = adapter_bytes(adapters[0])
    all_adapters = sum(adapter_bytes(p) for p in adapters)
    if quantized and kernels:  # 4-bit files are dequantized into float32 slots: that is what a step reads
        all_adapters = args.batch * slot_bytes(os.path.join(root, f"batched-{kernels[0]}"), args.rank)
    # Quantized files are dequantized into 16-bit slots: half of their float32 size is read per step.
    half_bytes = {dt: args.batch * slot_bytes(os.path.join(root, f"batched-fused-{dt}"), args.rank) for dt in halves}
    layers, kvh, head = dec["num_hidden_layers"], dec["num_key_value_heads"], dec["head_size"]
    kv_mid = layers * 2 * args.batch * kvh * head * 4 * (args.prompt + args.new_tokens // 2)
    bw = max(bw1, bwn)
    bound_c = (weights_step + kv_mid) / bw / 1e6  # ms
    bound_d = (weights_step + all_adapters + kv_mid) / bw / 1e6
    lora_form = "quantized, dequantized into fp32 slots" if args.int4_lora == "quantized" else "excluded: fp32"
    precision = "fp32" if args.precision == "fp32" else f"int4 (MatMulNBits, LoRA {lora_form})"

    print()
    print(
        f"model set {root}: llama, {layers} layers, hidden {dec['hidden_size']}, intermediate {args.intermediate}, "
        f"{dec['num_attention_heads']} heads / {kvh} KV heads of {head}, vocab {vocab}, {precision}, untied "
        "embeddings; "
        f"{params / 1e6:.1f}M parameters, {init_bytes / 1e6:.1f} MB of weights"
    )
    print(
        f"1-minute load average {load_before:.2f} before timing, {load_after:.2f} after (this run adds "
        f"~{args.threads}; more means other processes shared the cores and the numbers are noisy)"
    )
    print(
        f"{args.batch} sequences x {args.prompt} prompt tokens (random ids, seed 1), {args.new_tokens} new tokens "
        f"greedy; {args.batch} distinct rank-{args.rank} adapters on q/k/v/o/gate/up/down "
        f"({one_adapter / 1e6:.2f} MB each); intra-op threads {args.threads}; median of {args.repeats}"
    )
    print(
        f"onnxruntime {ort.__version__}, multilora {ml.__version__} (ORT {ml.ort_info().version})"
        + ("" if args.skip_genai else f", onnxruntime-genai {__import__('onnxruntime_genai').__version__}")
    )
    if build_times:
        print("build (s): " + ", ".join(f"{k} {v:.1f}" for k, v in build_times.items()))
    print(
        f"decode tok/s = {args.batch} x {args.new_tokens - 1} tokens / decode time (the first new token comes "
        "from the prompt pass and is counted in prefill); (best) = the fastest run; CPU share = this process's CPU "
        f"time during decode / (wall time x {args.threads} threads), near 1 when nothing else ran (ORT's threads "
        "spin), well below when other processes took the cores"
    )
    print()
    ref = f"d-{kernels[0]}" if kernels else None

    def adapter_rate(key: str, extra_ms: Optional[float] = None) -> str:
        """Per-row variants: the adapters' bytes over the time they add to the base step, GB/s and as a share of
        the read bandwidth measured above (the issue's 'bytes per step / (per-row step - base step)')."""
        if not key.startswith("d") or "c-ml" not in variants:
            return "-"
        if extra_ms is None:
            extra_ms = step_ms(key) - step_ms("c-ml")
        nbytes = half_bytes.get(key[len("d-fused-") :], all_adapters) if key.startswith("d-fused-") else all_adapters
        read = (one_adapter if key == "d1" else nbytes) / 1e6  # MB read per step
        if extra_ms <= 0:
            return "no extra time"
        rate = read / extra_ms  # MB/ms = GB/s
        return f"{rate:.1f} ({100 * rate / bw:.0f}%)"

    print(
        "| variant | setup ms | prefill ms | decode ms/step | (best) | decode tok/s | (d) tok/s / this | CPU share "
        f"| adapter GB/s (% of {bw:.1f} GB/s read) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key in variants:
        ratio = f"{tok_s(ref) / tok_s(key):.2f}" if ref else "-"
        print(
            f"| {labels[key]} | {med(key, 'setup_s') * 1e3:.1f} | {med(key, 'prefill_s') * 1e3:.1f} | "
            f"{step_ms(key):.2f} | {best_step_ms(key):.2f} | {tok_s(key):.1f} | {ratio} | {cpu_share(key):.2f} "
            f"| {adapter_rate(key)} |"
        )
    print()
    print(
        f"read bandwidth (numpy sum, {args.bandwidth_gib:g} GiB float32, best of 5): {bw1:.2f} GB/s on 1 thread, "
        f"{bwn:.2f} GB/s on {args.threads} threads"
    )
    print(
        f"bytes per decode step: weights {weights_step / 1e6:.1f} MB (all layers + lm_head; embedding table "
        f"{embed_bytes / 1e6:.1f} MB not read), {args.batch} adapters {all_adapters / 1e6:.1f} MB, KV cache at "
        f"mid-decode {kv_mid / 1e6:.1f} MB"
    )
    print(f"bandwidth-bound step at {bw:.2f} GB/s: base {bound_c:.2f} ms, with {args.batch} adapters {bound_d:.2f} ms")
    # fp32 multiply-adds of one step: every weight and adapter value once per row (attention itself is small).
    flop_c = 2.0 * args.batch * weights_step / 4
    flop_d = flop_c + 2.0 * all_adapters / 4  # each row reads only its own adapter
    print(
        f"compute for comparison: {flop_c / 1e9:.2f} GFLOP per base step ({flop_d / 1e9:.2f} with the adapters); "
        f"numpy fp32 matmul peak {gflops:.1f} GFLOP/s -> compute-bound step {flop_c / gflops / 1e6:.2f} ms "
        f"({flop_d / gflops / 1e6:.2f} ms)"
    )
    print(f"  (c) multilora base: {step_ms('c-ml'):.2f} ms/step = {step_ms('c-ml') / bound_c:.2f}x the bandwidth bound")
    if "c-og" in variants:
        s = step_ms("c-og")
        print(f"  (c) onnxruntime-genai base: {s:.2f} ms/step = {s / bound_c:.2f}x the bandwidth bound")
    for k in kernels:
        s = step_ms(f"d-{k}")
        print(f"  (d) {k}: {s:.2f} ms/step = {s / bound_d:.2f}x the bandwidth bound")
    for dt in halves:
        s = step_ms(f"d-fused-{dt}")
        bound_h = (weights_step + half_bytes[dt] + kv_mid) / bw / 1e6
        print(
            f"  (d) fused, {dt}: {s:.2f} ms/step = {s / bound_h:.2f}x the bandwidth bound "
            f"({half_bytes[dt] / 1e6:.1f} MB of adapters)"
        )
    failed = False
    if ref is not None:
        if "a" in variants:
            want = results["a"][0].tokens
            for k in kernels:
                got = results[f"d-{k}"][0].tokens
                bad = [i for i in range(args.batch) if not np.array_equal(got[i], want[i])]
                if bad and args.precision == "int4":
                    # int4: the fused kernel multiplies dequantized LoRA blocks in fp32 while MatMulNBits may
                    # quantize activations (accuracy_level 4): tokens may part; tests/python/test_int4.py checks
                    # the logits within a justified tolerance instead.
                    print(f"int4: (d) {k}: rows {bad} part from (a)'s greedy tokens (not a failure on int4)")
                elif bad:
                    failed = True
                    i = bad[0]
                    j = int(np.argmax(got[i] != want[i]))
                    print(
                        f"CORRECTNESS FAILURE: (d) {k}: rows {bad} differ from (a) (ORT, one Run per adapter); "
                        f"row {i} first differs at new token {j}: {got[i][: j + 1].tolist()} vs "
                        f"{want[i][: j + 1].tolist()}"
                    )
                else:
                    print(
                        f"correctness: (d) {k}: every row's {args.new_tokens} greedy tokens equal (a)'s for its adapter"
                    )
            for dt in halves:
                got = results[f"d-fused-{dt}"][0].tokens
                same = sum(np.array_equal(got[i], want[i]) for i in range(args.batch))
                print(
                    f"(d) fused, {dt} adapters: {same} of {args.batch} rows' greedy tokens equal (a)'s with the "
                    f"float32 adapters (the {dt} files round every adapter value; exactness w.r.t. the files is "
                    "tested in tests/python/test_batching_kernel.py)"
                )
            if "b" in variants:
                same = np.array_equal(results["b"][0].tokens, want)
                print(f"(b) onnxruntime-genai tokens equal (a)'s: {same}")
        distinct = len({tuple(r) for r in results[ref][0].tokens.tolist()})
        print(f"(d): {distinct} distinct token sequences among {args.batch} rows")
        print()
        ra = tok_s(ref) / tok_s("a") if "a" in variants else float("nan")
        rc = tok_s(ref) / tok_s("c-ml")
        print(f"target (d)/(a) >= 6:    {ra:.2f}x  {'met' if ra >= 6 else 'NOT met'}  (medians)")
        print(f"target (d)/(c) >= 0.85: {rc:.2f}x  {'met' if rc >= 0.85 else 'NOT met'}  (medians; c = multilora base)")
        if args.repeats > 1:
            rab = best_ratio(ref, "a") if "a" in variants else float("nan")
            print(f"        on the best runs: (d)/(a) = {rab:.2f}x, (d)/(c) = {best_ratio(ref, 'c-ml'):.2f}x")
        if "c-og" in variants:
            print(f"        (d)/(c, onnxruntime-genai base) = {tok_s(ref) / tok_s('c-og'):.2f}x")
        for dt in halves:
            rh = tok_s(f"d-fused-{dt}") / tok_s("c-ml")
            # issue 15: >= 0.92 for 16-bit files in 16-bit slots on fp32; >= 0.85 for an int4 base (any slots)
            goal = 0.85 if args.precision == "int4" else 0.92
            print(f"target (d, {dt} slots)/(c) >= {goal}: {rh:.2f}x  {'met' if rh >= goal else 'NOT met'}  (medians)")
    if args.step_interleaved > 2:
        step_interleaved(variants, labels, args.step_interleaved, adapter_rate)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
