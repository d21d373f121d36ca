"""Writes the small seeded model and adapters the README's examples use (``/tmp/ml`` there).

    python scripts/example_files.py /tmp/ml

``model.onnx``: a seeded 2-layer decoder-style model with LoRA inputs on q/k/v/o_proj (multilora.testing);
``sql.onnx_adapter`` (rank 8, every module), ``chat.onnx_adapter`` (rank 4, q_proj and v_proj),
``code.onnx_adapter`` (rank 16, o_proj). Random weights: for what multilora does with a trained model, run the
demo (scripts/demo.sh).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import multilora as ml
from multilora import testing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder to write into (created if missing)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    info = testing.make_lora_model(
        args.out / "model.onnx", layers=2, hidden=32, vocab=64, modules=("q_proj", "k_proj", "v_proj", "o_proj"), seed=7
    )
    specs = {"sql": (8, 11, None), "chat": (4, 12, ("q_proj", "v_proj")), "code": (16, 13, ("o_proj",))}
    for name, (rank, seed, modules) in specs.items():
        ml.write_adapter(
            args.out / f"{name}.onnx_adapter", testing.make_adapter_params(info, rank=rank, seed=seed, modules=modules)
        )
    print(f"wrote {args.out / 'model.onnx'} and {', '.join(f'{n}.onnx_adapter' for n in specs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
