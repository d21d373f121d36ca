"""The request engine under load (issue 13 item 4): many clients, each request with a random adapter.

Variants, same requests (prompt ids, new-token counts, adapters; seeded), greedy with eos held back so every
request generates exactly its new-token count:

  (e) ours: ``ml.Engine`` on the model prepared with ``multilora prepare-batching`` (max_batch_size = clients);
  (a) one request at a time through ``ml.Generator`` with its adapter (what GenAI users do), FIFO;
  (b) ``og.Engine`` (onnxruntime-genai) on the same LoRA model with no adapters — a base-model anchor: it
      cannot switch adapters per request;
  (c) one ``og.Generator`` per request in parallel threads (one per client), ``og.Adapters`` +
      ``set_active_adapter``.

Mixes: *chat* (prompts 32–128 tokens, 64–128 new) and *prefill* (prompts 256–512, 16–32 new). Arrivals:
*closed* (each client submits its next request when the last one finished) and *poisson* (open loop at
``--rate`` requests/s). Reported per run: generated tokens/s, TTFT p50/p99 and inter-token p50/p99 (ms), and
for the engine the *ideal* continuous-batching throughput of the mix, from this run's measured batch-1 prefill
rate (tokens/s) and full-batch decode step time: every prompt must be prefilled (compute-bound, not shareable)
and every token decoded in full batches, so ideal = new tokens / (prompt tokens / prefill rate + new tokens /
batch * step time).

Model: a folder from ``build_engine_bench_model.py`` (numpy + onnx only; default dims ~125M parameters like
``build_llm_bench_model.py``'s, which needs torch/PEFT/Olive). ``--dims small`` builds a ~36M model quickly.
Timings need a quiet machine; on a shared one this only shows the benchmark runs.

    python benchmarks/bench_engine.py [--model DIR] [--dims small|bench] [--clients 1,4,16,32]
        [--mix chat,prefill] [--arrivals closed,poisson] [--variants e,a,b,c] [--requests 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, NamedTuple, Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import build_engine_bench_model as builder  # noqa: E402

MIXES = {"chat": ((32, 128), (64, 128)), "prefill": ((256, 512), (16, 32))}
DIMS = {
    "bench": dict(hidden=768, layers=12, heads=12, kv_heads=4, intermediate=2048, vocab=32000, context=1024),
    "small": dict(hidden=512, layers=8, heads=8, kv_heads=4, intermediate=1408, vocab=8000, context=1024),
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=500, context=640),
}


class Job(NamedTuple):
    client: int
    prompt: List[int]
    new: int
    adapter: int
    arrival: float  # seconds after start (poisson); 0 for closed loop


class Trace:
    """Per request: submit time and the time of every token."""

    def __init__(self) -> None:
        self.submit = 0.0
        self.times: List[float] = []


def make_jobs(mix: str, clients: int, per_client: int, adapters: int, vocab: int, seed: int,
              poisson_rate: Optional[float]) -> List[Job]:  # fmt: skip
    rng = np.random.default_rng(seed)
    (p0, p1), (n0, n1) = MIXES[mix]
    jobs = []
    t = 0.0
    for i in range(clients * per_client):
        if poisson_rate:
            t += float(rng.exponential(1.0 / poisson_rate))
        length = int(rng.integers(p0, p1 + 1))
        jobs.append(
            Job(
                i % clients,
                rng.integers(4, vocab, length).tolist(),
                int(rng.integers(n0, n1 + 1)),
                int(rng.integers(0, adapters)),
                t,
            )  # fmt: skip
        )
    return jobs


def percentile(xs: List[float], q: float) -> float:
    if not xs:
        return float("nan")
    return float(np.percentile(np.asarray(xs), q))


def summarize(traces: List[Trace], wall: float) -> Dict[str, float]:
    tokens = sum(len(t.times) for t in traces)
    ttft = [(t.times[0] - t.submit) * 1e3 for t in traces if t.times]
    itl = [(b - a) * 1e3 for t in traces for a, b in zip(t.times, t.times[1:])]
    return {
        "tok_s": tokens / wall,
        "ttft_p50": percentile(ttft, 50),
        "ttft_p99": percentile(ttft, 99),
        "itl_p50": percentile(itl, 50),
        "itl_p99": percentile(itl, 99),
    }


def drive(jobs: List[Job], clients: int, poisson: bool, run_one: Callable[[Job, Trace], None]) -> Dict[str, float]:
    """Closed loop: one thread per client runs its jobs in order. Poisson: one thread per job, started at its
    arrival time (run_one may block on a shared resource)."""
    traces = [Trace() for _ in jobs]
    t0 = time.perf_counter()
    if poisson:

        def at(i: int) -> None:
            delay = jobs[i].arrival - (time.perf_counter() - t0)
            if delay > 0:
                time.sleep(delay)
            run_one(jobs[i], traces[i])

        with ThreadPoolExecutor(max_workers=len(jobs)) as ex:
            list(ex.map(at, range(len(jobs))))
    else:

        def client(c: int) -> None:
            for i, job in enumerate(jobs):
                if job.client == c:
                    run_one(job, traces[i])

        with ThreadPoolExecutor(max_workers=clients) as ex:
            list(ex.map(client, range(clients)))
    return summarize(traces, time.perf_counter() - t0)


# ---- variants ---------------------------------------------------------------------------------------------


def variant_engine(ml, model, reg, jobs, clients, poisson, threads) -> Dict[str, float]:
    with ml.Engine(model, max_batch_size=max(1, clients)) as engine:

        def run_one(job: Job, tr: Trace) -> None:
            p = ml.GeneratorParams(model)
            total = len(job.prompt) + job.new
            p.set_search_options(max_length=total, min_length=total)
            p.set_active_adapters(reg, [f"a{job.adapter}"])
            tr.submit = time.perf_counter()
            req = engine.submit(p, job.prompt)
            for _ in req:
                tr.times.append(time.perf_counter())

        return drive(jobs, clients, poisson, run_one)


def variant_generator(ml, model, reg, jobs, clients, poisson, threads) -> Dict[str, float]:
    lock = threading.Lock()  # one request at a time, FIFO-ish

    def run_one(job: Job, tr: Trace) -> None:
        tr.submit = time.perf_counter()
        with lock:
            p = ml.GeneratorParams(model)
            total = len(job.prompt) + job.new
            p.set_search_options(max_length=total, min_length=total)
            p.set_active_adapters(reg, [f"a{job.adapter}"])
            g = ml.Generator(model, p)
            g.append_tokens(np.asarray(job.prompt, np.int32))
            while not g.is_done():
                g.generate_next_token()
                tr.times.append(time.perf_counter())

    return drive(jobs, clients, poisson, run_one)


def variant_og_engine(og, folder, jobs, clients, poisson) -> Dict[str, float]:
    cv = threading.Condition()
    pending: List = []  # (job, trace, done event) submitted by clients, picked up by the driver
    stop = threading.Event()
    ready = threading.Event()

    def driver() -> None:
        # og.Engine calls must come from the thread that made it: the driver owns it
        model = og.Model(folder)
        engine = og.Engine(model)
        buf = engine.create_event_buffer(4096)
        live: List[tuple] = []  # (request, trace, done, job)
        ready.set()
        while not stop.is_set():
            with cv:
                while pending:
                    job, tr, done = pending.pop(0)
                    r = engine.create_request()
                    o = og.TurnOptions(r)
                    o.set_max_generated_tokens(job.new)
                    o.set_min_generated_tokens(job.new)
                    o.set_do_sample(False)
                    r.begin_turn(np.asarray(job.prompt, np.int32), o)
                    live.append((r, tr, done, job))
                if not live:
                    cv.wait(0.01)
                    continue
            for ev in engine.run(buf):
                entry = next((v for v in live if v[0] == ev.request), None)
                if entry is None:
                    continue
                r, tr, done, job = entry
                tr.times.append(time.perf_counter())
                if len(tr.times) >= job.new:
                    done.set()
                    live.remove(entry)

    th = threading.Thread(target=driver, daemon=True)
    th.start()
    ready.wait(600)

    def run_one(job: Job, tr: Trace) -> None:
        done = threading.Event()
        tr.submit = time.perf_counter()
        with cv:
            pending.append((job, tr, done))
            cv.notify()
        done.wait(600)

    try:
        return drive(jobs, clients, poisson, run_one)
    finally:
        stop.set()
        th.join(5)


def variant_og_generators(og, folder, adapter_files, jobs, clients, poisson) -> Dict[str, float]:
    model = og.Model(folder)
    adapters = og.Adapters(model)
    for i, path in enumerate(adapter_files):
        adapters.load(path, f"a{i}")

    def run_one(job: Job, tr: Trace) -> None:
        tr.submit = time.perf_counter()
        params = og.GeneratorParams(model)
        total = len(job.prompt) + job.new
        params.set_search_options(max_length=total, min_length=total, do_sample=False)
        g = og.Generator(model, params)
        g.set_active_adapter(adapters, f"a{job.adapter}")
        g.append_tokens(np.asarray(job.prompt, np.int32))
        while not g.is_done():
            g.generate_next_token()
            tr.times.append(time.perf_counter())

    return drive(jobs, clients, poisson, run_one)


# ---- ideal ------------------------------------------------------------------------------------------------


def measure_rates(ml, model, reg, batch: int, prompt_len: int, past: int, vocab: int) -> Dict[str, float]:
    """Batch-1 prefill rate (tokens/s) on a prompt of prompt_len; decode step time at `batch` rows (per-row
    adapters, past ~`past`)."""
    rng = np.random.default_rng(1)
    p = ml.GeneratorParams(model)
    p.set_search_options(max_length=prompt_len + 1)
    p.set_active_adapters(reg, ["a0"])
    times = []
    for _ in range(3):
        g = ml.Generator(model, p)
        t0 = time.perf_counter()
        g.append_tokens(rng.integers(4, vocab, prompt_len).astype(np.int32))
        times.append(time.perf_counter() - t0)
    prefill_rate = prompt_len / statistics.median(times)
    p = ml.GeneratorParams(model)
    p.set_search_options(batch_size=batch, max_length=past + 24, min_length=past + 24)
    p.set_active_adapters_per_row(reg, [[f"a{i % len(reg)}"] for i in range(batch)])
    g = ml.Generator(model, p)
    g.append_tokens(rng.integers(4, vocab, (batch, past)).astype(np.int32))
    g.generate_next_token()
    steps = []
    for _ in range(16):
        t0 = time.perf_counter()
        g.generate_next_token()
        steps.append(time.perf_counter() - t0)
    return {"prefill_tok_s": prefill_rate, "step_s": statistics.median(steps)}


def ideal(jobs: List[Job], batch: int, rates: Dict[str, float]) -> float:
    prompt = sum(len(j.prompt) for j in jobs)
    new = sum(j.new for j in jobs)
    seconds = prompt / rates["prefill_tok_s"] + new / max(1, min(batch, len(jobs))) * rates["step_s"]
    return new / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="folder from build_engine_bench_model.py (built when missing)")
    ap.add_argument("--dims", choices=sorted(DIMS), default="bench")
    ap.add_argument("--adapters", type=int, default=16)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--kernel", choices=["fused", "gather"], default="fused")
    ap.add_argument("--clients", default="1,4,16,32")
    ap.add_argument("--mix", default="chat,prefill")
    ap.add_argument("--arrivals", default="closed,poisson")
    ap.add_argument("--rate", type=float, default=2.0, help="poisson arrivals per second")
    ap.add_argument("--variants", default="e,a,b,c")
    ap.add_argument("--requests", type=int, default=2, help="requests per client")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of every session")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import multilora as ml

    dims = argparse.Namespace(**DIMS[args.dims], rank=args.rank, adapters=args.adapters)
    out = args.model or builder.default_out(dims)
    builder.build(dims, out, [args.kernel])
    lora = os.path.join(out, "lora")
    batched = os.path.join(out, f"batched-{args.kernel}")
    adapter_files = [os.path.join(lora, "adapters", f"a{i}.onnx_adapter") for i in range(args.adapters)]
    opts = ml.ModelOptions()
    opts.set_intra_op_threads(args.threads)
    model = ml.Model(batched, opts)
    reg = ml.Adapters(model)
    for i, path in enumerate(adapter_files):
        reg.load(path, f"a{i}")
    plain = ml.Model(lora, opts)
    preg = ml.Adapters(plain)
    for i, path in enumerate(adapter_files):
        preg.load(path, f"a{i}")
    try:
        import onnxruntime_genai as og
    except ImportError:
        og = None
    variants = args.variants.split(",")
    print(f"model {out} ({args.dims}), {args.adapters} rank-{args.rank} adapters, kernel {args.kernel}, "
          f"{args.threads} threads; {args.requests} requests per client")  # fmt: skip
    header = f"{'mix':8} {'arrivals':8} {'clients':>7} {'variant':24} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p99':>9} "
    header += f"{'ITL p50':>8} {'ITL p99':>8} {'ideal':>8}"
    print(header)
    for mix in args.mix.split(","):
        for arrivals in args.arrivals.split(","):
            for clients in [int(c) for c in args.clients.split(",")]:
                poisson = arrivals == "poisson"
                jobs = make_jobs(mix, clients, args.requests, args.adapters, dims.vocab, args.seed,
                                 args.rate if poisson else None)  # fmt: skip
                rows = []
                if "e" in variants:
                    r = variant_engine(ml, model, reg, jobs, clients, poisson, args.threads)
                    (p0, p1), (n0, n1) = MIXES[mix]
                    rates = measure_rates(ml, model, reg, clients, (p0 + p1) // 2, (p0 + p1) // 2 + (n0 + n1) // 4,
                                          dims.vocab)  # fmt: skip
                    rows.append(("(e) ml.Engine", r, ideal(jobs, clients, rates)))
                if "a" in variants:
                    r = variant_generator(ml, plain, preg, jobs, clients, poisson, args.threads)
                    rows.append(("(a) Generator, one by one", r, None))
                if "b" in variants and og is not None:
                    rows.append(
                        ("(b) og.Engine, no adapter", variant_og_engine(og, lora, jobs, clients, poisson), None)
                    )
                if "c" in variants and og is not None:
                    rows.append(("(c) og.Generator/thread", variant_og_generators(og, lora, adapter_files, jobs,
                                                                                  clients, poisson), None))  # fmt: skip
                for name, r, best in rows:
                    line = f"{mix:8} {arrivals:8} {clients:7d} {name:24} {r['tok_s']:8.1f} {r['ttft_p50']:9.1f} "
                    line += f"{r['ttft_p99']:9.1f} {r['itl_p50']:8.1f} {r['itl_p99']:8.1f} "
                    line += f"{best:8.1f}" if best else f"{'':8}"
                    print(line, flush=True)
    print("TTFT and ITL (inter-token latency) in ms; ideal = tokens/s bound from this run's batch-1 prefill rate and "
          "full-batch decode step time (see the module doc).")  # fmt: skip


if __name__ == "__main__":
    main()
