"""``multilora serve``: an OpenAI-compatible server over the request engine (needs ``multilora[serve]``).

    multilora serve MODEL_DIR [--adapter NAME=PATH ...] [--host 127.0.0.1] [--port 8000] [--api-key KEY]
                    [--max-batch-size N] [--max-queue N] [--adapter-root DIR] [--allow-adapter-loading]
                    [--model-name NAME] [--max-body-bytes N] [--ray --replicas N]

The API key may also come from the environment variable MULTILORA_API_KEY (then it is not visible in the process
list). ``add_serve_command(subparsers)`` registers the sub-command on the ``multilora`` parser.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any

__all__ = ["add_serve_command", "run_serve"]


def _adapter_arg(text: str) -> Any:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_serve_command(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="serve a GenAI model folder and its adapters over an OpenAI-compatible HTTP API",
        description="Serve a GenAI model folder (prepared with `multilora prepare-batching` for per-row adapters) "
        "and LoRA adapters over OpenAI's /v1/completions and /v1/chat/completions; `model` names the base "
        "model or an adapter. Needs `pip install multilora[serve]`.",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="GenAI model folder")
    p.add_argument(
        "--adapter",
        action="append",
        type=_adapter_arg,
        default=[],
        metavar="NAME=PATH",
        help="serve an .onnx_adapter file or PEFT folder as model NAME (repeatable)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' on every route but /health (or set MULTILORA_API_KEY)",
    )
    p.add_argument("--model-name", default=None, help="the base model's name in requests (default: the folder's name)")
    p.add_argument("--max-batch-size", type=_positive, default=16, help="rows the engine generates at once")
    p.add_argument(
        "--max-queue",
        type=_positive,
        default=None,
        help="requests waiting for a row before new ones get 429 (default: the engine's)",
    )
    p.add_argument("--max-body-bytes", type=_positive, default=1 << 20, help="request body limit (413 over it)")
    p.add_argument(
        "--adapter-root",
        default=None,
        help="folder that /v1/load_lora_adapter may load from (paths outside it are refused)",
    )
    p.add_argument(
        "--allow-adapter-loading",
        action="store_true",
        help="enable /v1/load_lora_adapter and /v1/unload_lora_adapter (needs --adapter-root)",
    )
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--ray", action="store_true", help="serve on Ray Serve: --replicas engines (multilora[ray])")
    p.add_argument("--replicas", type=_positive, default=2, help="with --ray: number of engine replicas")
    p.add_argument(
        "--max-adapters-per-replica",
        type=_positive,
        default=8,
        help="with --ray: adapter sets a replica keeps loaded (Ray Serve multiplexing, LRU)",
    )
    p.set_defaults(func=run_serve)
    return p


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(args: argparse.Namespace) -> int:
    try:
        from .serve import ServeConfig
    except ImportError as e:
        print(f"multilora serve: needs the serving extra (pip install 'multilora[serve]'): {e}", file=sys.stderr)
        return 1
    if not os.path.isdir(args.model_dir):
        print(f"multilora serve: no such model folder: {args.model_dir}", file=sys.stderr)
        return 1
    if args.allow_adapter_loading and not args.adapter_root:
        print("multilora serve: --allow-adapter-loading needs --adapter-root", file=sys.stderr)
        return 2
    if args.adapter_root and not os.path.isdir(args.adapter_root):
        print(f"multilora serve: no such adapter root: {args.adapter_root}", file=sys.stderr)
        return 1
    names = [n for n, _ in args.adapter]
    if len(set(names)) != len(names):
        print("multilora serve: an adapter name is given twice", file=sys.stderr)
        return 2
    api_key = args.api_key or os.environ.get("MULTILORA_API_KEY") or None
    if not _is_loopback(args.host) and not api_key:
        print(f"multilora serve: warning: listening on {args.host} without --api-key", file=sys.stderr)
    config = ServeConfig(
        model_dir=args.model_dir,
        adapters=dict(args.adapter),
        model_name=args.model_name,
        max_batch_size=args.max_batch_size,
        max_queue=args.max_queue,
        api_key=api_key,
        adapter_root=args.adapter_root,
        allow_adapter_loading=args.allow_adapter_loading,
        max_body_bytes=args.max_body_bytes,
    )
    from . import MultiloraError

    try:
        if args.ray:
            try:
                from .serve.ray_serve import run_ray
            except ImportError as e:
                print(f"multilora serve --ray: needs Ray Serve (pip install 'multilora[ray]'): {e}", file=sys.stderr)
                return 1
            run_ray(
                config,
                host=args.host,
                port=args.port,
                replicas=args.replicas,
                max_adapters_per_replica=args.max_adapters_per_replica,
            )
        else:
            from .serve import run

            run(config, host=args.host, port=args.port, log_level=args.log_level)
    except MultiloraError as e:
        print(f"multilora serve: {e.status_name}: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"multilora serve: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
