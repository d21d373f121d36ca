"""How should the engine prefill a newcomer while other rows decode? Measures the options on a builder-layout model
(GroupQueryAttention with a shared past/present buffer) with onnxruntime directly, base model (no adapters):

  (a) alone at batch 1, in chunks of c tokens, over a [1, kv_heads, L, head] view of the newcomer's row of the
      shared KV buffer (what the engine does): per chunk one extra pass of c tokens, next to the decode pass;
  (b1) in the decode pass, one prompt token per step: the decode pass runs at batch B+1 instead of B for n steps;
  (b2) in the batch with a mask, c > 1 tokens for the newcomer while the other rows decode: every row of a pass
      has the same number of new tokens, so the decoding rows would be padded to c, and GroupQueryAttention
      refuses more than one new token per row over a non-empty cache unless the batch is 1 (tried here, the
      error is printed).

Prints the pass times (medians) and, for a prompt of n tokens, the extra compute and the steps until its first
token under (a) and (b1).

    python benchmarks/measure_engine_prefill.py MODEL_DIR [--batch 8] [--past 256] [--prompt 256] [--threads 2]

MODEL_DIR: a folder from build_engine_bench_model.py (its lora/ subfolder is used) or any builder model folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Dict, List

import numpy as np
import onnxruntime as ort


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--batch", type=int, default=8, help="decoding rows B")
    ap.add_argument("--past", type=int, default=256, help="positions already in each decoding row")
    ap.add_argument("--prompt", type=int, default=256, help="newcomer prompt tokens n")
    ap.add_argument("--chunks", default="16,64,256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    d = args.model_dir
    if os.path.exists(os.path.join(d, "lora", "genai_config.json")):
        d = os.path.join(d, "lora")
    cfg = json.load(open(os.path.join(d, "genai_config.json")))["model"]
    dec = cfg["decoder"]
    layers, kvh, hd, L = dec["num_hidden_layers"], dec["num_key_value_heads"], dec["head_size"], cfg["context_length"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(os.path.join(d, dec["filename"]), so, providers=["CPUExecutionProvider"])
    rows = args.batch + 1
    kv = {
        f"{kind}.{i}.{t}": np.zeros((rows, kvh, L, hd), np.float32)
        for i in range(layers)
        for kind, t in (("k", "key"), ("v", "value"))
    }

    def run(first: int, batch: int, ids: np.ndarray, lens: List[int]) -> float:
        """One pass over rows first..first+batch-1 of the KV buffers; lens = each row's length after the pass."""
        width = max(lens)
        mask = np.zeros((batch, width), np.int64)
        for r, n in enumerate(lens):
            mask[r, :n] = 1
        b = sess.io_binding()
        b.bind_cpu_input("input_ids", ids.astype(np.int64))
        b.bind_cpu_input("attention_mask", mask)
        for i in range(layers):
            for kind, t in (("k", "key"), ("v", "value")):
                view = kv[f"{kind}.{i}.{t}"][first : first + batch]
                v = ort.OrtValue.ortvalue_from_numpy(view)
                b.bind_ortvalue_input(f"past_key_values.{i}.{t}", v)
                b.bind_ortvalue_output(f"present.{i}.{t}", v)
        b.bind_output("logits")
        t0 = time.perf_counter()
        sess.run_with_iobinding(b)
        return time.perf_counter() - t0

    rng = np.random.default_rng(0)
    vocab = cfg["vocab_size"]

    def median(fn) -> float:
        fn()
        return statistics.median(fn() for _ in range(args.repeats))

    B, P, n = args.batch, args.past, args.prompt
    t_dec = median(lambda: run(0, B, rng.integers(4, vocab, (B, 1)), [P + 1] * B))
    t_dec1 = median(lambda: run(0, B + 1, rng.integers(4, vocab, (B + 1, 1)), [P + 1] * B + [n // 2 + 1]))
    print(f"model {d}: {layers} layers, kv heads {kvh} x {hd}, context {L}; threads {args.threads}")
    print(f"decode pass, batch {B} (past {P}):       {t_dec * 1e3:8.2f} ms")
    print(f"decode pass, batch {B + 1} (+1 prefilling row): {t_dec1 * 1e3:8.2f} ms")
    out: Dict[str, float] = {}
    for c in [int(x) for x in args.chunks.split(",")]:
        c = min(c, n)
        # mean over the prompt's chunks: chunk k sits at past k*c
        times = []
        for k in range(max(1, n // c)):
            times.append(median(lambda k=k, c=c: run(B, 1, rng.integers(4, vocab, (1, c)), [k * c + c])))
        out[str(c)] = float(np.mean(times))
        print(f"(a) batch-1 prefill chunk of {c:4d} tokens: {out[str(c)] * 1e3:8.2f} ms per chunk (prompt mean)")
    print(f"\nA prompt of {n} tokens while {B} rows decode:")
    for c, t in out.items():
        k = max(1, n // int(c))
        print(
            f"  (a) chunks of {c:>4}: {k:4d} extra passes, extra compute {k * t * 1e3:8.1f} ms, "
            f"first token after {k} steps; each of those steps takes {(t_dec + t) * 1e3:.1f} ms instead of "
            f"{t_dec * 1e3:.1f}"
        )
    extra = max(0.0, t_dec1 - t_dec)
    print(f"  (b1) 1 token/step in the batch: extra compute {n * extra * 1e3:8.1f} ms, first token after {n} steps")
    # (b2): more than one new token per row over a cache, batch > 1
    try:
        run(0, 2, rng.integers(4, vocab, (2, 4)), [P + 4, P + 4])
        print("  (b2) a batch pass with 4 new tokens per row over a cache: accepted")
    except Exception as e:  # noqa: BLE001 - the message is the result
        msg = str(e).split("Status Message:")[-1].strip()[:160]
        print(f"  (b2) a batch pass with 4 new tokens per row over a cache: refused by onnxruntime ({msg})")


if __name__ == "__main__":
    main()
