"""The ``multilora`` command line.

    multilora inspect FILE [--json]
    multilora generate --model DIR [--adapter NAME=PATH ...] [--active NAME ...] --prompt TEXT  (cli_generate.py)
    multilora convert PEFT_DIR -o OUT.onnx_adapter --model M [--dtype float16]                  (cli_peft.py)
    multilora check --model M ADAPTER... [--json]                                                (cli_peft.py)
    multilora prepare-model IN.onnx OUT.onnx --targets q_proj,v_proj                             (cli_peft.py)
    multilora prepare-batching IN.onnx OUT.onnx | IN_DIR OUT_DIR                          (prepare_batching.py)
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
from typing import Any, Callable, Dict, List, Optional, Sequence

from ._cli_text import human as _human
from ._cli_text import shape_str as _shape_str
from ._cli_text import table as _table

__all__ = ["main", "inspect_file", "is_adapter_file"]


def is_adapter_file(path: str) -> bool:
    """True if the file starts like an .onnx_adapter (FlatBuffers identifier "TORT" at bytes 4..7)."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        head = f.read(8)
    return len(head) == 8 and head[4:8] == b"TORT"


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
        fixed = sorted({lo["shape"][lo["rank_axis"]] for lo in info["lora_inputs"]} - {None})
        if fixed:
            lines.append(
                f"quantized LoRA (MatMulNBits): the model fixes the rank at {', '.join(map(str, fixed))}; "
                "`multilora prepare-batching` serves any rank"
            )
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
    if args.version:
        return _guarded("--version", _print_version, args)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    func = args.func if args.command != "inspect" else _inspect
    return _guarded(args.command, func, args)


def _print_version(args: argparse.Namespace) -> int:
    from . import __version__

    print(__version__)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    if not os.path.exists(args.file):
        print(f"multilora inspect: no such file or folder: {args.file}", file=sys.stderr)
        return 1
    info = inspect_file(args.file)
    try:
        print(json.dumps(info, indent=2) if args.json else _format(info))
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into head
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


# Optional packages -> the extra of pyproject.toml that installs them.
EXTRAS = {
    "onnx": "tools",
    "tokenizers": "generation",
    "tqdm": None,
    "fastapi": "serve",
    "uvicorn": "serve",
    "prometheus_client": "serve",
    "jinja2": "serve",
    "ray": "ray",
}


def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _missing_module(e: ImportError) -> Optional[str]:
    """The top-level name of the module whose import failed (also through a chained ImportError)."""
    err: Optional[BaseException] = e
    while err is not None:
        name = getattr(err, "name", None)
        if name:
            return str(name).split(".")[0]
        err = err.__cause__ or err.__context__
    return None


def _guarded(command: str, func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Runs one command; a missing optional package, a library error or bad input becomes one line on stderr
    and exit code 1 (never a traceback; MULTILORA_DEBUG=1 re-raises)."""
    prefix = f"multilora {command}:" if not command.startswith("-") else "multilora:"
    try:
        return int(func(args))
    except KeyboardInterrupt:
        print(f"{prefix} interrupted", file=sys.stderr)
        return 130
    except ImportError as e:
        if os.environ.get("MULTILORA_DEBUG"):
            raise
        name = _missing_module(e)
        if name == "multilora" or name is None:
            print(f"{prefix} the multilora package is not installed correctly: {_one_line(e)}", file=sys.stderr)
        elif EXTRAS.get(name):
            print(f"{prefix} needs the '{name}' package: pip install 'multilora[{EXTRAS[name]}]'", file=sys.stderr)
        else:
            print(f"{prefix} needs the '{name}' package: pip install {name}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - the CLI reports every error as one line
        if os.environ.get("MULTILORA_DEBUG"):
            raise
        status = getattr(e, "status_name", None)
        if status:  # MultiloraError: the library's status name and message
            print(f"{prefix} {status}: {_one_line(e)}", file=sys.stderr)
        elif isinstance(e, (OSError, ValueError, KeyError, TypeError)):
            text = _one_line(e.args[0] if isinstance(e, KeyError) and e.args else e)
            print(f"{prefix} {text or type(e).__name__}", file=sys.stderr)
        else:  # e.g. protobuf's DecodeError for a file that is not an ONNX model
            print(f"{prefix} {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
