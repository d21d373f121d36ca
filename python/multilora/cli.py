"""The ``multilora`` command line.

    multilora inspect FILE [--json]
    multilora generate --model DIR [--adapter NAME=PATH ...] [--active NAME ...] --prompt TEXT  (cli_generate.py)
    multilora convert PEFT_DIR -o OUT.onnx_adapter --model M [--dtype float16]                  (cli_peft.py)
    multilora check --model M ADAPTER... [--json]                                                (cli_peft.py)
    multilora prepare-model IN.onnx OUT.onnx --targets q_proj,v_proj                             (cli_peft.py)
    multilora prepare-batching IN.onnx OUT.onnx                                           (prepare_batching.py)
    multilora serve MODEL_DIR --adapter NAME=PATH ... [--port 8000] [--api-key KEY]            (cli_serve.py)

FILE is an .onnx_adapter file (recognised by its ``TORT`` identifier), an .onnx model or a GenAI model
folder. Adapters: parameters with dtypes and shapes, rank, versions, sizes. Models: inputs, outputs and
the LoRA inputs with their rank axis. Plain aligned text (no extra dependency); ``--json`` for machines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["main", "inspect_file", "is_adapter_file"]


def is_adapter_file(path: str) -> bool:
    """True if the file starts like an .onnx_adapter (FlatBuffers identifier "TORT" at bytes 4..7)."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        head = f.read(8)
    return len(head) == 8 and head[4:8] == b"TORT"


def _shape_str(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()]
    lines += [fmt.format(*row).rstrip() for row in rows]
    return lines


def _inspect_adapter(path: str) -> Dict[str, Any]:
    from ._api import Adapter

    with Adapter.open(path) as adapter:
        params = adapter.params
        data_bytes = sum(p.nbytes for p in params.values())
        return {
            "kind": "adapter",
            "path": path,
            "file_bytes": os.path.getsize(path),
            "format_version": adapter.format_version,
            "adapter_version": adapter.adapter_version,
            "model_version": adapter.model_version,
            "rank": adapter.rank,
            "parameter_count": len(params),
            "parameter_bytes": data_bytes,
            "bytes_mapped": adapter.bytes_mapped,
            "bytes_copied": adapter.bytes_copied,
            "parameters": [
                {"name": name, "dtype": p.dtype, "shape": list(p.shape), "bytes": p.nbytes}
                for name, p in params.items()
            ],
        }


def _inspect_model(path: str) -> Dict[str, Any]:
    from ._api import Model

    with Model(path) as model:
        return {
            "kind": "model",
            "path": path,
            "inputs": [{"name": i.name, "dtype": i.dtype, "shape": list(i.shape)} for i in model.inputs],
            "outputs": [{"name": o.name, "dtype": o.dtype, "shape": list(o.shape)} for o in model.outputs],
            "lora_inputs": [
                {
                    "name": lo.name,
                    "kind": lo.kind,
                    "dtype": lo.dtype,
                    "shape": list(lo.shape),
                    "rank_axis": lo.rank_axis,
                    "features": lo.features,
                }
                for lo in model.lora_inputs
            ],
        }


def inspect_file(path: str) -> Dict[str, Any]:
    """A description of an adapter file, a PEFT folder or a model, as the ``--json`` output prints it."""
    if os.path.isfile(os.path.join(path, "adapter_config.json")):
        from .cli_peft import inspect_peft

        return inspect_peft(path)
    return _inspect_adapter(path) if is_adapter_file(path) else _inspect_model(path)


def _format(info: Dict[str, Any]) -> str:
    lines: List[str] = []
    if info["kind"] == "peft":
        from .cli_peft import format_peft

        return format_peft(info)
    if info["kind"] == "adapter":
        lines.append(f"adapter   {info['path']}")
        lines.append(f"size      {info['file_bytes']} bytes ({_human(info['file_bytes'])})")
        lines.append(
            f"versions  format {info['format_version']}, adapter {info['adapter_version']}, "
            f"model {info['model_version']}"
        )
        lines.append(f"rank      {info['rank']}")
        lines.append(f"params    {info['parameter_count']} ({info['parameter_bytes']} bytes of data)")
        lines.append(f"memory    {info['bytes_mapped']} bytes mapped, {info['bytes_copied']} bytes copied")
        lines.append("")
        rows = [[p["name"], p["dtype"], _shape_str(p["shape"]), str(p["bytes"])] for p in info["parameters"]]
        lines += _table(["name", "dtype", "shape", "bytes"], rows)
    else:
        lines.append(f"model     {info['path']}")
        lines.append("")
        lines.append("inputs")
        lines += _table(
            ["name", "dtype", "shape"], [[i["name"], i["dtype"], _shape_str(i["shape"])] for i in info["inputs"]]
        )
        lines.append("")
        lines.append("outputs")
        lines += _table(
            ["name", "dtype", "shape"], [[o["name"], o["dtype"], _shape_str(o["shape"])] for o in info["outputs"]]
        )
        lines.append("")
        lines.append(f"LoRA inputs ({len(info['lora_inputs'])}; r = the rank axis)")
        rows = []
        for lo in info["lora_inputs"]:
            shape = "[" + ", ".join("r" if d is None else str(d) for d in lo["shape"]) + "]"
            rows.append([lo["name"], lo["kind"], lo["dtype"], shape, str(lo["rank_axis"])])
        lines += _table(["name", "kind", "dtype", "shape", "rank axis"], rows)
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="multilora", description="multilora command line tools")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    p_inspect = sub.add_parser("inspect", help="describe an .onnx_adapter file or a LoRA-enabled model")
    p_inspect.add_argument("file", help="an .onnx_adapter file, an .onnx model or a GenAI model folder")
    p_inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    from .cli_generate import add_generate_command

    add_generate_command(sub)
    from .cli_peft import add_peft_commands

    add_peft_commands(sub)
    from .prepare_batching import add_prepare_batching_command

    add_prepare_batching_command(sub)
    from .cli_serve import add_serve_command

    add_serve_command(sub)
    args = parser.parse_args(argv)

    from . import MultiloraError, __version__

    if args.version:
        print(__version__)
        return 0
    if args.command in ("generate", "convert", "check", "prepare-model", "prepare-batching", "serve"):
        return int(args.func(args))
    if args.command != "inspect":
        parser.print_help(sys.stderr)
        return 2
    if not os.path.exists(args.file):
        print(f"multilora inspect: no such file or folder: {args.file}", file=sys.stderr)
        return 1
    try:
        info = inspect_file(args.file)
    except MultiloraError as e:
        print(f"multilora inspect: {e.status_name}: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:  # a malformed PEFT folder
        print(f"multilora inspect: {e}", file=sys.stderr)
        return 1
    try:
        print(json.dumps(info, indent=2) if args.json else _format(info))
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into head
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
