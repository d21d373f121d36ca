"""multilora demo: one base model, three adapters, switched per run and mixed — checked against numpy.

Builds a small seeded decoder-style model with LoRA inputs and three adapters ("sql", "chat", "code")
in a temporary folder, loads the model once, memory-maps the adapters, and runs the same prompt with
the base model, each adapter, and a weighted mix. Every row is compared with an independent numpy
reference of the same network.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import multilora as ml
from multilora import testing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", metavar="DIR", help="write the model and adapters here instead of a temp dir")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(args.keep or tmp)
        d.mkdir(parents=True, exist_ok=True)
        info = testing.make_lora_model(
            d / "model.onnx", layers=2, hidden=32, vocab=64, modules=("q_proj", "k_proj", "v_proj", "o_proj"), seed=7
        )
        specs = {"sql": (8, 11, None), "chat": (4, 12, ("q_proj", "v_proj")), "code": (16, 13, ("o_proj",))}
        params = {}
        for name, (rank, seed, modules) in specs.items():
            params[name] = testing.make_adapter_params(info, rank=rank, seed=seed, modules=modules)
            ml.write_adapter(d / f"{name}.onnx_adapter", params[name])

        model = ml.Model(d / "model.onnx")
        adapters = ml.Adapters(model)
        for name in specs:
            adapters.load(d / f"{name}.onnx_adapter", name)
        ids = testing.make_input_ids(info, batch=1, seq=6, seed=3)
        print(f"model: {d / 'model.onnx'}  ({len(model.lora_inputs)} LoRA inputs)")
        print(f"ONNX Runtime: {ml.ort_info().version}   multilora {ml.__version__}\n")
        cases = [
            ("base", [], []),
            ("sql", ["sql"], [1.0]),
            ("chat", ["chat"], [1.0]),
            ("code", ["code"], [1.0]),
            ("sql + 0.5*chat", ["sql", "chat"], [1.0, 0.5]),
            ("0.3*sql + 0.7*code", ["sql", "code"], [0.3, 0.7]),
        ]
        header = (
            f"{'active set':<20} {'rank':>5} {'next token':>10} {'logit':>9} {'max |Δ| vs base':>16} "
            f"{'max err vs numpy':>17} {'run ms':>7}"
        )
        print(header)
        print("-" * len(header))
        base_logits = None
        worst = 0.0
        for label, names, weights in cases:
            opts = ml.RunOptions()
            opts.set_active_adapters(adapters, names, weights)
            t0 = time.perf_counter()
            (logits,) = model.run(["logits"], {"input_ids": ids}, opts)
            ms = (time.perf_counter() - t0) * 1e3
            ref = testing.reference_forward(info, ids, [(params[n], w) for n, w in zip(names, weights)])
            err = float(np.abs(logits - ref).max())
            worst = max(worst, err)
            last = logits[0, -1]
            if base_logits is None:
                base_logits = logits
            delta = float(np.abs(logits - base_logits).max())
            rank = sum(adapters.get(n).rank for n in names)
            print(
                f"{label:<20} {rank:>5} {int(last.argmax()):>10} {float(last.max()):>9.4f} {delta:>16.4f} "
                f"{err:>17.2e} {ms:>7.2f}"
            )
        print(
            f"\nall rows match the numpy reference within {worst:.1e}"
            if worst < 1e-3
            else f"\nMISMATCH: worst error {worst:.3e}"
        )
        return 0 if worst < 1e-3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
