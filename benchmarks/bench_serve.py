"""Load benchmark of ``multilora serve``: N concurrent streaming HTTP clients (asyncio + httpx), each request with a
random adapter, against

- (http)    the server with ``--max-batch-size B`` (a separate process, as deployed),
- (http-1)  the same server with ``--max-batch-size 1`` (no batching: one request at a time),
- (engine)  the request engine driven in this process with the same requests (no HTTP, no JSON, no tokenizer).

Every client runs a closed loop of ``--requests`` requests; prompts are token ids (the same in every mode), greedy,
``--max-tokens`` new tokens. Reported per mode: generated tokens/s over the wall time, TTFT p50/p99 (submit to the
first token) and inter-token p50/p99 as the client sees them, and the HTTP layer's cost = 1 - http/engine tokens/s.

    python benchmarks/bench_serve.py --model DIR --adapters-dir DIR [--clients 16] [--requests 4] [--max-tokens 64]
    python benchmarks/bench_serve.py             # no --model: a quick smoke on the committed test fixture

The model folder must be prepared for batching (``multilora prepare-batching``). With the engine's bench model
(``python benchmarks/build_engine_bench_model.py``, numpy + onnx only) use ``--model
build-bench-engine/h768-l12/batched-fused --adapters-dir build-bench-engine/h768-l12/lora/adapters``; a folder
without tokenizer.json gets a word-level one (one word per id) in a linked copy.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Stats:
    tokens: int = 0
    wall: float = 0.0
    ttft: List[float] = field(default_factory=list)
    itl: List[float] = field(default_factory=list)
    errors: int = 0


def pct(xs: List[float], q: float) -> float:
    if not xs:
        return float("nan")
    return float(np.percentile(np.asarray(xs), q))


def make_jobs(args: argparse.Namespace, names: List[str], vocab: int, context: int) -> List[List[Tuple]]:
    """Per client: (adapter or None, prompt ids) for each of its requests; seeded, the same in every mode."""
    rng = random.Random(args.seed)
    longest = max(1, min(args.prompt_max, context - args.max_tokens - 1))
    jobs = []
    for _ in range(args.clients):
        mine = []
        for _ in range(args.requests):
            n = rng.randint(min(args.prompt_min, longest), longest)
            prompt = [rng.randrange(4, vocab) for _ in range(n)]
            mine.append((rng.choice(names) if names else None, prompt))
        jobs.append(mine)
    return jobs


# ------------------------------------------------------------------------------------------------ HTTP


async def http_client(http, url: str, base: str, mine: List[Tuple], max_tokens: int, out: Stats) -> None:
    """Streams each request; the client's own work is kept small (it shares the machine with the server): token
    chunks are counted in the raw bytes as they arrive (one ``"token_ids":[id]`` per token), not parsed."""
    for adapter, prompt in mine:
        body = {
            "model": adapter or base,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "return_token_ids": True,
        }
        t0 = time.perf_counter()
        last: Optional[float] = None
        async with http.stream("POST", url + "/v1/completions", json=body) as r:
            if r.status_code != 200:
                out.errors += 1
                await r.aread()
                continue
            tail = b""
            async for block in r.aiter_raw():
                data = tail + block
                n = data.count(b'"token_ids":[') - data.count(b'"token_ids":[]')
                tail = data[-16:]
                n -= tail.count(b'"token_ids":[') - tail.count(b'"token_ids":[]')  # counted again next time
                if n <= 0:
                    continue
                now = time.perf_counter()
                if last is None:
                    out.ttft.append(now - t0)
                    out.itl.extend([0.0] * (n - 1))
                else:
                    out.itl.append(now - last)
                    out.itl.extend([0.0] * (n - 1))
                last = now
                out.tokens += n


async def drive_http(args: argparse.Namespace, url: str, base: str, adapters: Dict[str, str], jobs) -> Stats:
    import httpx

    out = Stats()
    limits = httpx.Limits(max_connections=args.clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        warm = [(next(iter(adapters), None), [5, 6, 7])]
        await http_client(http, url, base, warm, 2, Stats())
        t0 = time.perf_counter()
        await asyncio.gather(*(http_client(http, url, base, m, args.max_tokens, out) for m in jobs))
        out.wall = time.perf_counter() - t0
    return out


def run_http(args: argparse.Namespace, model: str, adapters: Dict[str, str], jobs, batch: int) -> Stats:
    import httpx

    from multilora.serve import free_port

    base = os.path.basename(os.path.normpath(model))
    if args.server_url:  # a server started by hand (e.g. under a profiler) with the same model and adapters
        return asyncio.run(drive_http(args, args.server_url, base, adapters, jobs))
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "multilora.cli",
        "serve",
        model,
        "--port",
        str(port),
        "--max-batch-size",
        str(batch),
        "--log-level",
        "warning",
        "--max-queue",
        str(max(16, args.clients * 2)),
    ]
    for name, path in adapters.items():
        cmd += ["--adapter", f"{name}={path}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError("server exited: " + proc.communicate()[1].decode(errors="replace"))
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        return asyncio.run(drive_http(args, url, base, adapters, jobs))
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


# ------------------------------------------------------------------------------------------------ in-process engine


def run_engine(args: argparse.Namespace, model_dir: str, adapters: Dict[str, str], jobs, batch: int) -> Stats:
    import multilora as ml

    model = ml.Model(model_dir)
    reg = ml.Adapters(model)
    for name, path in adapters.items():
        reg.load(path, name)
    engine = ml.Engine(model, max_batch_size=batch)

    async def client(mine: List[Tuple], out: Stats) -> None:
        for adapter, prompt in mine:
            params = ml.GeneratorParams(model)
            params.set_search_options(max_length=len(prompt) + args.max_tokens, do_sample=False)
            if adapter:
                params.set_active_adapters(reg, [adapter])
            t0 = time.perf_counter()
            req = engine.submit(params, np.asarray(prompt, dtype=np.int32))
            last: Optional[float] = None
            async for _tok in req.stream():
                now = time.perf_counter()
                if last is None:
                    out.ttft.append(now - t0)
                else:
                    out.itl.append(now - last)
                last = now
                out.tokens += 1
            params.close()

    async def main() -> Stats:
        # as the server does: one executor thread per request in flight for Request.stream()'s waits
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=args.clients + 8))
        out = Stats()
        await client([(next(iter(adapters), None), [5, 6, 7])], Stats())
        t0 = time.perf_counter()
        await asyncio.gather(*(client(m, out) for m in jobs))
        out.wall = time.perf_counter() - t0
        return out

    try:
        return asyncio.run(main())
    finally:
        engine.close()
        reg.close()
        model.close()


# ------------------------------------------------------------------------------------------------ main


def smoke_model(tmp: str) -> Tuple[str, Dict[str, str]]:
    from multilora.prepare_batching import prepare_batching

    src = os.path.join(ROOT, "tests", "python", "fixtures", "generation", "lora")
    dest = os.path.join(tmp, "lora")
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("model.onnx"))
    prepare_batching(os.path.join(src, "model.onnx"), os.path.join(dest, "model.onnx"))
    adapters = {os.path.basename(p).split(".")[0]: p for p in sorted(glob.glob(os.path.join(dest, "adapters", "*")))}
    return dest, adapters


def with_tokenizer(model: str, tmp: str, vocab: int) -> str:
    """The server needs a tokenizer.json (it decodes text); a folder without one (build_engine_bench_model.py's) is
    linked file by file into a temporary folder with a word-level tokenizer of one word per id added."""
    if os.path.isfile(os.path.join(model, "tokenizer.json")):
        return model
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    dest = os.path.join(tmp, os.path.basename(os.path.normpath(model)))
    os.makedirs(dest)
    for name in os.listdir(model):
        os.symlink(os.path.abspath(os.path.join(model, name)), os.path.join(dest, name))
    words = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    words.update({f"w{i}": i for i in range(4, vocab)})
    tok = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.save(os.path.join(dest, "tokenizer.json"))
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="GenAI folder prepared for batching (default: a smoke run on the test fixture)")
    ap.add_argument("--adapters-dir", help="every *.onnx_adapter in it is served, named after its file")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=4, help="requests per client (closed loop)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt-min", type=int, default=32)
    ap.add_argument("--prompt-max", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16, help="--max-batch-size of the batched server and the engine")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default="http,http-1,engine")
    ap.add_argument("--server-url", help="mode http: drive this running server instead of starting one")
    ap.add_argument("--repeats", type=int, default=1, help="runs of every mode, alternating; the median is shown")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-serve-")
    try:
        if args.model:
            model = args.model
            adir = args.adapters_dir or os.path.join(model, "adapters")
            adapters = {
                os.path.basename(p).split(".")[0]: p for p in sorted(glob.glob(os.path.join(adir, "*.onnx_adapter")))
            }
        else:
            model, adapters = smoke_model(tmp)
            args.max_tokens = min(args.max_tokens, 24)
            args.prompt_min, args.prompt_max = 4, 24
        with open(os.path.join(model, "genai_config.json"), encoding="utf-8") as f:
            cfg = json.load(f)["model"]
        model = with_tokenizer(model, tmp, int(cfg["vocab_size"]))
        jobs = make_jobs(args, list(adapters), int(cfg["vocab_size"]), int(cfg["context_length"]))
        print(
            f"model {model}: {len(adapters)} adapters; {args.clients} clients x {args.requests} requests, "
            f"prompts {args.prompt_min}-{args.prompt_max} tokens, {args.max_tokens} new, greedy, streaming"
        )
        runs: Dict[str, List[Stats]] = {}
        for _ in range(args.repeats):  # modes alternate, so load on the machine hits each alike
            for mode in args.modes.split(","):
                if mode == "http":
                    name, stats = f"http (batch {args.batch})", run_http(args, model, adapters, jobs, args.batch)
                elif mode == "http-1":
                    name, stats = "http (batch 1)", run_http(args, model, adapters, jobs, 1)
                elif mode == "engine":
                    name = f"engine in-process (batch {args.batch})"
                    stats = run_engine(args, model, adapters, jobs, args.batch)
                else:
                    raise SystemExit(f"unknown mode {mode}")
                runs.setdefault(name, []).append(stats)
        results: Dict[str, Stats] = {}
        for name, stats_list in runs.items():  # the median run by tokens/s, latencies pooled over the runs
            best = sorted(stats_list, key=lambda st: st.tokens / st.wall)[len(stats_list) // 2]
            results[name] = Stats(
                best.tokens,
                best.wall,
                [x for st in stats_list for x in st.ttft],
                [x for st in stats_list for x in st.itl],
                sum(st.errors for st in stats_list),
            )
        engine_tps = next((s.tokens / s.wall for k, s in results.items() if k.startswith("engine")), None)
        head = (
            f"{'mode':<30} {'tokens':>7} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8} "
            f"{'errors':>6} {'vs engine':>9}"
        )
        print(head)
        print("-" * len(head))
        for name, s in results.items():
            tps = s.tokens / s.wall if s.wall else float("nan")
            rel = f"{tps / engine_tps:8.2f}x" if engine_tps else "-"
            print(
                f"{name:<30} {s.tokens:>7} {tps:>8.1f} {pct(s.ttft, 50) * 1e3:>7.1f}ms {pct(s.ttft, 99) * 1e3:>7.1f}ms "
                f"{pct(s.itl, 50) * 1e3:>6.2f}ms {pct(s.itl, 99) * 1e3:>6.2f}ms {s.errors:>6} {rel:>9}"
            )
        ttft_all = [x for s in results.values() for x in s.ttft]
        if ttft_all:
            print(
                f"(median of all TTFTs {statistics.median(ttft_all) * 1e3:.1f} ms; tokens/s = generated tokens / "
                "wall time of the whole load)"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
