"""``multilora generate``: stream text from a GenAI model folder with LoRA adapters.

    multilora generate --model DIR [--adapter NAME=PATH ...] [--active NAME[:WEIGHT] ...] --prompt TEXT
                       [--max-new-tokens N] [--do-sample] [--top-k K] [--top-p P] [--temperature T]
                       [--repetition-penalty R] [--min-length N] [--seed S] [--echo]

Adapters given with --adapter are loaded; --active picks the ones to apply (several are summed; a
weight scales one). With no --active, every loaded adapter is active. Text goes to stdout as it is
generated; errors go to stderr with the library's status name, and the exit code is 1.

``add_generate_command(subparsers)`` registers the sub-command on the ``multilora`` parser and sets
``func`` on its namespace (``args.func(args)`` runs it and returns the exit code).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, List, Tuple

__all__ = ["add_generate_command", "run_generate"]


def _adapter_arg(text: str) -> Tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def _active_arg(text: str) -> Tuple[str, float]:
    name, sep, weight = text.rpartition(":")
    if not sep:
        return text, 1.0
    try:
        return name, float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME or NAME:WEIGHT, got {text!r}") from None


def add_generate_command(subparsers: Any) -> argparse.ArgumentParser:
    """Adds ``generate`` to an argparse sub-parsers object; returns its parser."""
    p = subparsers.add_parser(
        "generate",
        help="stream text from a GenAI model folder, with LoRA adapters",
        description="Generate text from a GenAI model folder (genai_config.json, model.onnx, tokenizer.json) "
        "with any set of LoRA adapters, streaming it to stdout.",
    )
    p.add_argument("--model", required=True, help="GenAI model folder")
    p.add_argument(
        "--adapter",
        action="append",
        type=_adapter_arg,
        default=[],
        metavar="NAME=PATH",
        help="load an .onnx_adapter file under NAME (repeatable)",
    )
    p.add_argument(
        "--active",
        action="append",
        type=_active_arg,
        default=None,
        metavar="NAME[:WEIGHT]",
        help="apply this adapter (repeatable; several are summed). Default: every --adapter. "
        "--active none = the base model",
    )
    p.add_argument("--prompt", required=True, help="prompt text")
    p.add_argument("--max-new-tokens", type=int, default=None, help="cap on generated tokens")
    p.add_argument("--max-length", type=int, default=None, help="cap on prompt + generated tokens")
    p.add_argument("--min-length", type=int, default=None)
    p.add_argument("--do-sample", action="store_true", help="sample (default: greedy)")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--repetition-penalty", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--echo", action="store_true", help="print the prompt before the generated text")
    p.set_defaults(func=run_generate)
    return p


def run_generate(args: argparse.Namespace) -> int:
    from . import Adapters, Model, MultiloraError
    from .generation import Tokenizer, generate_stream

    if not os.path.isdir(args.model):
        print(f"multilora generate: no such model folder: {args.model}", file=sys.stderr)
        return 1
    search = {}
    for key in ("min_length", "top_k", "top_p", "temperature", "repetition_penalty", "seed", "max_length"):
        value = getattr(args, key)
        if value is not None:
            search[key] = value
    if args.do_sample:
        search["do_sample"] = True
    try:
        with Model(args.model) as model:
            registry = Adapters(model)
            for name, path in args.adapter:
                registry.load(path, name)
            if args.active is None:
                active: List[Tuple[str, float]] = [(name, 1.0) for name, _ in args.adapter]
            elif [n for n, _ in args.active] == ["none"]:
                active = []
            else:
                active = list(args.active)
            tokenizer = Tokenizer(model)
            if args.echo:
                sys.stdout.write(args.prompt)
                sys.stdout.flush()
            for piece in generate_stream(
                model,
                args.prompt,
                [n for n, _ in active],
                registry=registry,
                weights=[w for _, w in active] if active else None,
                tokenizer=tokenizer,
                max_new_tokens=args.max_new_tokens,
                **search,
            ):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            sys.stdout.flush()
    except MultiloraError as e:
        print(f"\nmultilora generate: {e.status_name}: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. piped into head
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0
