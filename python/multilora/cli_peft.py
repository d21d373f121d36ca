"""``multilora convert``, ``multilora check`` and ``multilora prepare-model``.

    multilora convert PEFT_DIR -o OUT.onnx_adapter --model M [--dtype float16] [--adapter-version N]
    multilora check --model M ADAPTER... [--ignore-model-version] [--json]
    multilora prepare-model IN.onnx OUT.onnx --targets q_proj,v_proj

``convert`` resolves the PEFT folder with the native core (as ``Adapters.load`` does) and writes an
.onnx_adapter recording the model's version; ONNX Runtime loads the file too. A progress bar appears when
``tqdm`` is installed and stderr is a terminal. ``check`` prints a table of parameters per adapter (ok /
unset / mismatches) and exits 1 on any mismatch, for CI. Errors go to stderr with the library's status name.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict

__all__ = ["add_peft_commands", "inspect_peft", "format_peft"]


def _convert(args: argparse.Namespace) -> int:
    from . import MultiloraError
    from .peft import convert

    if not os.path.isdir(args.peft_dir):
        print(f"multilora convert: not a PEFT folder: {args.peft_dir}", file=sys.stderr)
        return 1
    try:
        info = convert(
            args.peft_dir,
            args.output,
            args.model,
            dtype=args.dtype,
            adapter_version=args.adapter_version,
            progress=sys.stderr.isatty(),
        )
    except MultiloraError as e:
        print(f"multilora convert: {e.status_name}: {e}", file=sys.stderr)
        return 1
    print(
        f"wrote {info['output']}: {info['parameters']} parameters, rank {info['rank']}, {info['dtype']}, "
        f"model_version {info['model_version']}"
    )
    if info["dtype"] not in info["model_dtypes"]:
        print(
            f"multilora convert: warning: the model's LoRA inputs are {', '.join(info['model_dtypes'])}; "
            f"{info['dtype']} parameters will not load into it",
            file=sys.stderr,
        )
    return 0


def _check(args: argparse.Namespace) -> int:
    from . import MultiloraError
    from ._cli_text import table as _table
    from .peft import check

    try:
        report = check(args.model, args.adapters, ignore_model_version=args.ignore_model_version)
    except MultiloraError as e:
        print(f"multilora check: {e.status_name}: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    "matched": report.matched,
                    "unset": report.unset,
                    "mismatched": report.mismatched,
                    "rows": [vars(r) for r in report.rows],
                },
                indent=2,
            )
        )
    else:
        for adapter in dict.fromkeys(r.adapter for r in report.rows):
            rows = [r for r in report.rows if r.adapter == adapter]
            bad = sum(not r.ok for r in rows)
            print(f"{adapter}: {'OK' if bad == 0 else f'{bad} MISMATCHED'}")
            print(
                "\n".join(_table(["parameter", "status", "detail"], [[r.parameter, r.status, r.detail] for r in rows]))
            )
            print()
        print(f"{report.matched} matched, {report.mismatched} mismatched, {report.unset} LoRA inputs left unset")
    return 1 if report.mismatched else 0


def _prepare(args: argparse.Namespace) -> int:
    from .prepare_model import prepare_model

    targets = [t for t in args.targets.split(",") if t]
    try:
        added = prepare_model(args.input, args.output, targets)
    except (ValueError, OSError) as e:
        print(f"multilora prepare-model: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: {len(added)} projections adapted ({2 * len(added)} LoRA inputs)")
    return 0


def add_peft_commands(subparsers: Any) -> None:
    """Adds ``convert``, ``check`` and ``prepare-model`` to an argparse sub-parsers object."""
    p = subparsers.add_parser(
        "convert",
        help="convert a PEFT LoRA folder into an .onnx_adapter file for a model",
        description="Convert a PEFT LoRA folder (adapter_config.json + adapter_model.safetensors) into an "
        ".onnx_adapter file for a LoRA-enabled model; the file records the model's version.",
    )
    p.add_argument("peft_dir", help="PEFT LoRA folder")
    p.add_argument("-o", "--output", required=True, help="the .onnx_adapter file to write")
    p.add_argument("--model", required=True, help="the LoRA-enabled .onnx model or GenAI model folder")
    p.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        default=None,
        help="parameter dtype (default: the model's LoRA input dtype)",
    )
    p.add_argument("--adapter-version", type=int, default=0, help="adapter_version to record (default 0)")
    p.set_defaults(func=_convert)

    c = subparsers.add_parser(
        "check",
        help="check adapters against a model (exit code 1 on any mismatch)",
        description="Check .onnx_adapter files and PEFT folders against a model: a table of matched, unset "
        "and mismatched parameters per adapter; the exit code is 1 if anything mismatches.",
    )
    c.add_argument("--model", required=True, help="the LoRA-enabled .onnx model or GenAI model folder")
    c.add_argument("adapters", nargs="+", metavar="ADAPTER", help=".onnx_adapter file or PEFT folder")
    c.add_argument("--ignore-model-version", action="store_true", help="do not compare model versions")
    c.add_argument("--json", action="store_true", help="print JSON instead of text")
    c.set_defaults(func=_check)

    m = subparsers.add_parser(
        "prepare-model",
        help="add optional LoRA inputs to a plain ONNX model (needs the onnx package)",
        description="Add optional LoRA inputs (A [in, r], B [r, out], zero-rank defaults) to every MatMul whose "
        "weight initializer name contains one of the targets.",
    )
    m.add_argument("input", help="plain .onnx model")
    m.add_argument("output", help=".onnx model to write")
    m.add_argument("--targets", required=True, help="comma-separated module names, e.g. q_proj,v_proj")
    m.set_defaults(func=_prepare)


def inspect_peft(path: str) -> Dict[str, Any]:
    """``multilora inspect`` of a PEFT folder: its LoRA settings and tensors (header only; no model needed)."""
    from .peft import _read_json_file, read_safetensors_header

    cfg = _read_json_file(os.path.join(path, "adapter_config.json"))
    if not isinstance(cfg, dict):
        raise ValueError(f"{os.path.join(path, 'adapter_config.json')}: not a JSON object")
    keys = ("peft_type", "r", "lora_alpha", "use_rslora", "target_modules", "rank_pattern", "alpha_pattern")
    keys += ("use_dora", "modules_to_save", "bias")
    header = read_safetensors_header(os.path.join(path, "adapter_model.safetensors"))
    return {
        "kind": "peft",
        "path": path,
        "config": {k: cfg.get(k) for k in keys},
        "tensors": [{"name": n, "dtype": e["dtype"], "shape": e["shape"]} for n, e in sorted(header.items())],
    }


def format_peft(info: Dict[str, Any]) -> str:
    from ._cli_text import shape_str as _shape_str
    from ._cli_text import table as _table

    lines = [f"PEFT folder {info['path']}"]
    lines += [f"{k:<16}{json.dumps(v)}" for k, v in info["config"].items()]
    lines.append("")
    lines += _table(
        ["tensor", "dtype", "shape"], [[t["name"], t["dtype"], _shape_str(t["shape"])] for t in info["tensors"]]
    )
    return "\n".join(lines)
