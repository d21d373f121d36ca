"""multilora demo: one small trained model, three LoRA adapters, the same prompt — base, each adapter, a
weighted mix, and all of them as the rows of one batch.

The model in demo/model/ (made by scripts/train_demo_model.py, committed; nothing is trained here) is a
~1M-parameter Llama-like model trained on the Python standard library's sources, exported with ONNX Runtime
GenAI's model builder + Olive and prepared with ``multilora prepare-batching``. Its adapters learned three
styles of the same files: ``prose`` (docstrings), ``code`` (code without docstrings or comments) and
``shout`` (docstrings in capitals).

Checks, any failure exits non-zero: the files' SHA-256 against demo/model/SHA256SUMS; every row generated
alone equals the greedy tokens PyTorch + PEFT recorded at build time (reference.json); every row of the
batched generator equals that row generated alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import multilora as ml

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "demo" / "model"
Row = Tuple[str, List[str], List[float]]


def verify_checksums(folder: Path) -> int:
    """Checks every file SHA256SUMS lists; returns how many. Raises SystemExit naming the first bad file."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        raise SystemExit(f"demo: {sums} is missing (run scripts/train_demo_model.py to regenerate the model)")
    n = 0
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split(None, 1)
        path = folder / name.strip()
        if not path.is_file():
            raise SystemExit(f"demo: {path} is listed in SHA256SUMS but missing")
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        if got != digest:
            raise SystemExit(f"demo: checksum mismatch for {path}: expected {digest}, got {got}")
        n += 1
    return n


def wrap_lines(text: str, width: int) -> List[str]:
    """The text's lines (tabs expanded), each wrapped at spaces (or cut) to at most ``width`` characters."""
    out = []
    for line in text.expandtabs(4).split("\n"):
        out.extend(textwrap.wrap(line, width, drop_whitespace=False, break_on_hyphens=False) or [""])
    return out


def print_columns(texts: Dict[str, str], width: int) -> bool:
    """Prints the texts side by side in columns of equal width; False (nothing printed) if they do not fit."""
    sep = " │ "
    col = (width - len(sep) * (len(texts) - 1)) // len(texts)
    if col < 24:
        return False
    cols = [wrap_lines(t, col) for t in texts.values()]
    print(sep.join(f"{label[:col]:<{col}}" for label in texts).rstrip())
    print("─┼─".join("─" * col for _ in texts))
    for r in range(max(len(c) for c in cols)):
        print(sep.join(f"{(c[r] if r < len(c) else ''):<{col}}" for c in cols).rstrip())
    return True


def print_rows(texts: Dict[str, str], width: int) -> None:
    """One labelled row per text (newlines shown as ⏎), for terminals too narrow for columns."""
    label_w = max(len(k) for k in texts)
    for label, text in texts.items():
        body = wrap_lines(text.replace("\n", "⏎"), max(20, width - label_w - 3))
        print(f"{label:>{label_w}} │ {body[0]}")
        for more in body[1:]:
            print(f"{'':>{label_w}} │ {more}")


def generate(
    model: ml.Model, adapters: ml.Adapters, rows: Sequence[Row], prompt_ids: List[int], max_length: int
) -> Tuple[Dict[str, List[int]], Dict[str, List[int]], List[float], List[float]]:
    """Greedy generation of every row alone (a batch-1 generator each) and of all rows in one batched generator
    (per-row adapters), stepped in turn. Returns the new tokens of both and, per decode step, the time of one
    step of every solo generator together and of one batched step (ms)."""
    solo = []
    for _label, names, weights in rows:
        p = ml.GeneratorParams(model)
        p.set_search_options(max_length=max_length, do_sample=False)
        p.set_active_adapters(adapters, names, weights)
        g = ml.Generator(model, p)
        g.append_tokens(prompt_ids)
        solo.append(g)
    bp = ml.GeneratorParams(model)
    bp.set_search_options(max_length=max_length, do_sample=False, batch_size=len(rows))
    bp.set_active_adapters_per_row(adapters, [r[1] for r in rows], [r[2] for r in rows])
    batched = ml.Generator(model, bp)
    batched.append_tokens([prompt_ids] * len(rows))

    solo_ms: List[float] = []
    batch_ms: List[float] = []
    step = 0
    while not batched.is_done() or any(not g.is_done() for g in solo):
        t_solo = 0.0
        for g in solo:
            if not g.is_done():
                t = time.perf_counter()
                g.generate_next_token()
                t_solo += time.perf_counter() - t
        t_batch = 0.0
        if not batched.is_done():
            t = time.perf_counter()
            batched.generate_next_token()
            t_batch = time.perf_counter() - t
        if step > 0 and all(not g.is_done() for g in solo) and not batched.is_done():
            solo_ms.append(t_solo * 1e3)  # decode steps with every row running (step 0 also runs the prompt)
            batch_ms.append(t_batch * 1e3)
        step += 1

    n = len(prompt_ids)
    solo_tokens = {label: [int(t) for t in g.get_sequence(0)[n:]] for (label, _, _), g in zip(rows, solo)}
    batch_tokens = {label: [int(t) for t in batched.get_sequence(i)[n:]] for i, (label, _, _) in enumerate(rows)}
    # the batch pads finished rows with eos until every row is done: compare up to each row's own end
    batch_tokens = {k: v[: len(solo_tokens[k])] for k, v in batch_tokens.items()}
    for g in (*solo, batched):
        g.close()
    return solo_tokens, batch_tokens, solo_ms, batch_ms


def main(argv: Sequence[str] = ()) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the demo model folder (default demo/model)")
    ap.add_argument("--prompt", help="another prompt (then there is no PyTorch reference to compare with)")
    ap.add_argument("--new-tokens", type=int, help="tokens to generate (default: as recorded in reference.json)")
    ap.add_argument(
        "--width", type=int, default=shutil.get_terminal_size((160, 24)).columns, help="output width (columns)"
    )
    ap.add_argument("--repeats", type=int, default=5, help="generations to time (default 5; tokens must agree)")
    args = ap.parse_args(list(argv) or None)
    folder = args.model.resolve()
    n_files = verify_checksums(folder)
    ref = json.loads((folder / "reference.json").read_text())
    prompt = ref["prompt"] if args.prompt is None else args.prompt
    new_tokens = args.new_tokens or ref["new_tokens"]
    check_reference = args.prompt is None and new_tokens == ref["new_tokens"]

    t0 = time.perf_counter()
    model = ml.Model(str(folder))
    adapters = ml.Adapters(model)
    for name in ref["adapters"]:
        adapters.load(str(folder / "adapters" / f"{name}.onnx_adapter"), name)
    tok = ml.Tokenizer(model)
    load_ms = (time.perf_counter() - t0) * 1e3
    prompt_ids = [int(t) for t in tok.encode(prompt)]
    if check_reference and prompt_ids != ref["prompt_ids"]:
        print(f"MISMATCH: the prompt encodes to {prompt_ids}, reference.json says {ref['prompt_ids']}")
        return 1

    mix = ref["mix"]
    rows: List[Row] = [("base", [], [])]
    rows += [(n, [n], [1.0]) for n in ref["adapters"]]
    rows.append((ref["mix_label"], list(mix), [float(w) for w in mix.values()]))
    max_length = len(prompt_ids) + new_tokens

    build = ref.get("build", {})
    print("multilora demo: one trained base model, three LoRA adapters, the same prompt")
    print(
        f"model: {folder} ({build.get('parameters', '?')} parameters, trained on the Python standard library); "
        f"{n_files} files match SHA256SUMS"
    )
    print(
        f"adapters: {', '.join(ref['adapters'])} (rank 8 each); loaded in {load_ms:.0f} ms; "
        f"ONNX Runtime {ml.ort_info().version}, multilora {ml.__version__}"
    )
    print(f"prompt: {prompt!r}; greedy, {new_tokens} new tokens\n")

    solo_tokens, batch_tokens, solo_ms, batch_ms = generate(model, adapters, rows, prompt_ids, max_length)
    for _ in range(args.repeats - 1):  # more timing samples; the tokens must not change
        again = generate(model, adapters, rows, prompt_ids, max_length)
        if again[:2] != (solo_tokens, batch_tokens):
            print("MISMATCH: a repeated generation gave other tokens")
            return 1
        solo_ms += again[2]
        batch_ms += again[3]

    texts = {label: prompt + tok.decode(t) for label, t in batch_tokens.items()}
    indent = " " * (len(prompt) - len(prompt.lstrip(" ")))
    if indent:  # the prompt's indentation, taken off every line that has it, so columns stay narrow
        texts = {
            k: "\n".join(ln[len(indent) :] if ln.startswith(indent) else ln for ln in v.split("\n"))
            for k, v in texts.items()
        }
        print(f"(the prompt's {len(indent)}-space indentation is taken off every line)")
    if not print_columns(texts, args.width):
        print_rows(texts, args.width)
    print()

    failures = []
    for label, _, _ in rows:
        if batch_tokens[label] != solo_tokens[label]:
            failures.append(f"{label}: batched row {batch_tokens[label]} != alone {solo_tokens[label]}")
        if check_reference and solo_tokens[label] != ref["torch"][label]:
            failures.append(f"{label}: multilora {solo_tokens[label]} != PyTorch + PEFT {ref['torch'][label]}")
    for label, _, _ in rows[1:]:
        if solo_tokens[label] == solo_tokens["base"]:
            failures.append(f"{label}: the same tokens as the base model (the adapter changed nothing)")

    if solo_ms:
        s, b = statistics.median(solo_ms), statistics.median(batch_ms)
        k = len(rows)
        print(
            f"one decode step for all {k} rows (median of {len(solo_ms)} steps, {args.repeats} runs, interleaved):\n"
            f"  {k} generators, batch 1 each, a step of each: {s:7.2f} ms\n"
            f"  1 generator, batch {k}, a row per adapter set: {b:7.2f} ms   ({s / b:.1f}x less)"
        )
    runs = model.session_runs
    print(
        f"  runs: {runs.lora} on the LoRA graph, {runs.base} on the base-only graph (the base row alone; "
        f"{model.batch_slots.resident} adapter sets resident in the slot table)"
    )
    checks = f"{len(rows)} rows: batched = alone" + (" = PyTorch + PEFT (reference.json)" if check_reference else "")
    if failures:
        print("\nMISMATCH:\n  " + "\n  ".join(failures))
        return 1
    print(f"\nchecked: {checks}; every adapter changes the base model's text")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
