"""Trains the demo's tiny model and three LoRA adapters, exports them for multilora into demo/model/.

What it makes (committed under demo/model/, checked by ``scripts/demo.py`` against ``SHA256SUMS``):

- A byte-level BPE tokenizer (``tokenizers``, vocabulary 1024) and a small Llama-like model (transformers,
  4 layers, hidden 128, 4 heads of 32 with 2 KV heads, about 1M parameters) trained from scratch on the
  Python standard library's own sources (``<sys.base_prefix>/lib/python3.X/*.py``: code, docstrings and
  comments together).
- Three PEFT LoRA adapters (rank 8 on q/k/v/o/gate/up/down) trained on top of the frozen model, each on one
  style of the same files: ``prose`` (the docstrings: English), ``code`` (the code with docstrings and
  comments removed, as ``ast.unparse`` writes it) and ``shout`` (the docstrings in capitals, every full stop an
  exclamation mark).
- The export, like tests/python/fixtures/build_generation_fixtures.py: ONNX Runtime GenAI's model builder
  (``-p fp32 -e cpu --extra_options adapter_path=<prose>``) bakes a LoRA graph, ``olive generate-adapter``
  turns its LoRA weights into optional inputs (a GenAI folder); every adapter is converted from its PEFT
  folder with ``multilora convert``; ``multilora prepare-batching`` rewrites the decoder for per-row adapters.
  Only that prepared folder is committed (the demo runs base, single adapters, the mix and the batch on it).
- ``reference.json``: the demo's prompt and, for base / each adapter / the weighted mix, the greedy tokens of
  PyTorch + PEFT (full recompute every step, no KV cache), which the demo compares with its own tokens; the
  build checks that onnxruntime-genai gives the same tokens on the unprepared folder.
- ``SHA256SUMS`` over every other file.

Regenerating needs the pins of requirements-demo.txt (torch, transformers, PEFT, Olive: the same as
requirements-bench.txt) on top of the repository's .venv; every tool runs through the interpreter:

    .venv/bin/python -m pip install -r requirements-demo.txt
    .venv/bin/python scripts/train_demo_model.py                 # writes demo/model/

(``--multilora-python`` names another interpreter for the ``multilora`` steps when torch lives elsewhere.)

It took 14 minutes of wall time on 2 shared CPU cores busy with other builds (load average 4-8): 13 minutes of
training with one thread (1400 base steps at 0.35 s, 3 x 200 adapter steps at 0.4-0.55 s), 2 minutes for export
and references; 9 minutes of CPU time in all (on an idle core a base step takes 0.22 s). One thread: on the busy
machine a step with two threads took 4-10x longer than with one. The numbers of the committed run are in
demo/model/reference.json under "build". Training is seeded, single-threaded, with a fixed number of steps and
``torch.use_deterministic_algorithms``: two (shortened) runs here gave byte-identical weights, adapters and
exported files (the builder's ``producer_version`` is kept from stamping this repository's commit, see ``run``).
Other CPUs or library versions may round differently, and another Python
version has other standard-library files.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import shutil
import sys
import tempfile
import time
import tokenize
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from multilora.testing import genai_builder_command, olive_generate_adapter_command, run_export_tool

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "demo" / "model"
SPECIALS = ["<s>", "</s>", "<pad>"]  # ids 0, 1, 2: bos, eos, pad
VOCAB_SIZE = 1024
MODEL = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,  # GroupQueryAttention on CPU wants a multiple of 16
    max_position_embeddings=256,
)
SEQ = 128
THREADS = 1  # on a busy 2-core machine one thread was 4-10x faster per step than two
BASE = dict(steps=1400, batch=16, lr=3e-3, seed=0)
ADAPTERS = {
    "prose": dict(steps=200, batch=16, lr=4e-3, seed=1),
    "code": dict(steps=200, batch=16, lr=4e-3, seed=2),
    "shout": dict(steps=200, batch=16, lr=4e-3, seed=3),
}
LORA = dict(
    r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
)
MIX = {"prose": 0.5, "shout": 0.5}  # the demo's weighted mix
PROMPT = "    def read(self, "
NEW_TOKENS = 40


def log(msg: str) -> None:
    print(f"[train-demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- corpora


def stdlib_files() -> List[Path]:
    lib = Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    files = sorted(lib.glob("*.py"))
    if not files:
        raise SystemExit(f"no standard-library sources under {lib}")
    return files


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]


def _comments(src: str) -> List[str]:
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.COMMENT:
                text = tok.string.lstrip("#").strip()
                if len(text.split()) >= 4 and not text.startswith("!"):
                    out.append(text)
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass
    return out


def corpora() -> Dict[str, str]:
    """The four training texts, all from the same standard-library files (sorted, so deterministic)."""
    raw, prose, code = [], [], []
    for f in stdlib_files():
        try:
            src = f.read_text(encoding="utf-8")
            tree = ast.parse(src)
        except (UnicodeDecodeError, SyntaxError, ValueError):
            continue
        raw.append(src)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=True)
                if doc:
                    for para in doc.split("\n\n"):
                        para = " ".join(para.split())
                        # English sentences only: no doctests, tables, signatures or option lists
                        if len(para) > 40 and ">>>" not in para and para[0].isalpha() and para[-1] in ".!?":
                            prose.append(para)
        prose.extend(c for c in _comments(src) if c[0].isalpha())
        _strip_docstrings(tree)
        try:
            code.append(ast.unparse(tree))
        except (ValueError, RecursionError):
            pass
    prose_text = "\n".join(prose)
    shout = prose_text.upper().replace(".", "!")
    return {"base": "\n\n".join(raw), "prose": prose_text, "code": "\n\n".join(code), "shout": shout}


# ---------------------------------------------------------------- tokenizer and model


def make_tokenizer(texts: Dict[str, str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # the same share of every style, so capitals and unparsed code get merges of their own
    sample = [t[:600_000] for t in texts.values()]
    tok.train_from_iterator(sample, trainer=trainer)
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def windows(ids: np.ndarray, steps: int, batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(ids) - SEQ - 1, size=(steps, batch))
    return starts


def train_loop(model, params, ids: np.ndarray, spec: dict, label: str) -> dict:
    import torch

    opt = torch.optim.AdamW(params, lr=spec["lr"], betas=(0.9, 0.95), weight_decay=0.0)
    steps, batch = spec["steps"], spec["batch"]
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, s / steps))))
    )
    starts = windows(ids, steps, batch, spec["seed"])
    data = torch.from_numpy(ids.astype(np.int64))
    model.train()
    t0 = time.perf_counter()
    first = last = None
    for s in range(steps):
        x = torch.stack([data[i : i + SEQ] for i in starts[s]])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        v = float(loss)
        first = v if first is None else first
        last = v if last is None else 0.9 * last + 0.1 * v
        if s % 200 == 0 or s == steps - 1:
            log(f"{label}: step {s + 1}/{steps} loss {v:.3f} ({time.perf_counter() - t0:.0f} s)")
    model.eval()
    return {
        "steps": steps,
        "batch": batch,
        "seq": SEQ,
        "first_loss": round(first, 3),
        "final_loss_ema": round(last, 3),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def train_all(work: Path, texts: Dict[str, str], tok) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    ids = {k: np.asarray(tok.encode(v).ids, dtype=np.int32) for k, v in texts.items()}
    stats: dict = {"tokens": {k: int(len(v)) for k, v in ids.items()}}
    hf = work / "hf"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(hf)
    torch.manual_seed(BASE["seed"])
    cfg = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        **MODEL,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    stats["parameters"] = int(sum(p.numel() for p in model.parameters()))
    log(f"model: {stats['parameters']} parameters; tokens per corpus {stats['tokens']}")
    stats["base"] = train_loop(model, list(model.parameters()), ids["base"], BASE, "base")
    model.save_pretrained(hf, safe_serialization=True)
    for name, spec in ADAPTERS.items():
        torch.manual_seed(spec["seed"])
        base = LlamaForCausalLM.from_pretrained(hf)
        pm = get_peft_model(base, LoraConfig(lora_dropout=0.0, **LORA))
        trainable = [p for p in pm.parameters() if p.requires_grad]
        stats[name] = train_loop(pm, trainable, ids[name], spec, name)
        pm.save_pretrained(work / f"peft_{name}")
    return stats


# ---------------------------------------------------------------- export


def run(cmd: Sequence[object], cwd: Path) -> None:
    run_export_tool(cmd, cwd, log)


def export(work: Path, out: Path, mlora_python: str) -> Path:
    """GenAI builder + Olive -> a GenAI folder with LoRA inputs; adapters via `multilora convert`; then
    `multilora prepare-batching` into ``out``. Returns the unprepared folder (for the GenAI cross-check)."""
    hf = work / "hf"
    baked = work / "baked"
    run(
        genai_builder_command(hf, baked, "fp32", work / "cache", [f"adapter_path={work / 'peft_prose'}"]),
        cwd=work,
    )
    olive = work / "olive"
    run(
        olive_generate_adapter_command(baked, olive),
        cwd=work,
    )
    folder = work / "lora"
    (folder / "adapters").mkdir(parents=True)
    # what a GenAI folder needs (Olive's model_config.json records this machine's work paths)
    for f in ("model.onnx", "model.onnx.data", "genai_config.json", "tokenizer.json", "tokenizer_config.json"):
        if (olive / f).exists():
            shutil.copy(olive / f, folder / f)
    for name in ADAPTERS:
        run(
            [
                mlora_python,
                "-m",
                "multilora",
                "convert",
                work / f"peft_{name}",
                "-o",
                folder / "adapters" / f"{name}.onnx_adapter",
                "--model",
                folder,
            ],
            cwd=work,
        )
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    run([mlora_python, "-m", "multilora", "prepare-batching", folder, out], cwd=work)
    return folder


# ---------------------------------------------------------------- references


def torch_references(work: Path, prompt_ids: List[int]) -> dict:
    """Greedy tokens with full recompute every step (no KV cache): base, each adapter, the weighted mix."""
    import torch
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    def greedy(model) -> tuple:
        seq = list(prompt_ids)
        margins = []
        with torch.no_grad():
            for _ in range(NEW_TOKENS):
                logits = model(input_ids=torch.tensor([seq])).logits[0, -1].float()
                top2 = torch.topk(logits, 2).values
                margins.append(float(top2[0] - top2[1]))
                nxt = int(torch.argmax(logits))
                seq.append(nxt)
                if nxt == SPECIALS.index("</s>"):
                    break
        return seq[len(prompt_ids) :], min(margins)

    hf = work / "hf"
    refs, margins = {}, {}
    refs["base"], margins["base"] = greedy(LlamaForCausalLM.from_pretrained(hf).eval())
    names = list(ADAPTERS)
    pm = PeftModel.from_pretrained(
        LlamaForCausalLM.from_pretrained(hf).eval(), work / f"peft_{names[0]}", adapter_name=names[0]
    )
    for n in names[1:]:
        pm.load_adapter(work / f"peft_{n}", adapter_name=n)
    pm.eval()
    for n in names:
        pm.set_adapter(n)
        refs[n], margins[n] = greedy(pm)
    # the weighted mix: PEFT sums the active adapters' deltas; each delta's scale times its weight
    from peft.tuners.lora import LoraLayer

    for m in pm.modules():
        if isinstance(m, LoraLayer):
            for n, w in MIX.items():
                m.scaling[n] = m.scaling[n] * w
    pm.base_model.set_adapter(list(MIX))
    refs[mix_label()], margins[mix_label()] = greedy(pm)
    return {"tokens": refs, "min_top2_margin": {k: round(v, 5) for k, v in margins.items()}}


def mix_label() -> str:
    return " + ".join(f"{w:g}*{n}" for n, w in MIX.items())


def genai_tokens(folder: Path, prompt_ids: List[int]) -> dict:
    """onnxruntime-genai's greedy tokens on the unprepared folder (the build's cross-check)."""
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    adapters = og.Adapters(model)
    for n in ADAPTERS:
        adapters.load(str(folder / "adapters" / f"{n}.onnx_adapter"), n)
    out = {}
    for label in ["base", *ADAPTERS]:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(prompt_ids) + NEW_TOKENS, do_sample=False)
        gen = og.Generator(model, params)
        if label != "base":
            gen.set_active_adapter(adapters, label)
        gen.append_tokens(np.array([prompt_ids], dtype=np.int32))
        while not gen.is_done():
            gen.generate_next_token()
        out[label] = [int(t) for t in gen.get_sequence(0)[len(prompt_ids) :]]
    return out


def write_checksums(out: Path) -> None:
    lines = []
    for f in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
        lines.append(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.relative_to(out).as_posix()}")
    (out / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--work", type=Path, help="work folder to keep (HF model, PEFT adapters, ONNX folders)")
    ap.add_argument("--reuse", action="store_true", help="skip training when --work already holds it")
    ap.add_argument("--steps-scale", type=float, default=1.0, help="multiply every step count (smoke tests)")
    ap.add_argument(
        "--multilora-python",
        default=str(ROOT / ".venv" / "bin" / "python"),
        help="an interpreter with multilora installed (default: the repository's .venv)",
    )
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    for spec in (BASE, *ADAPTERS.values()):
        spec["steps"] = max(2, int(spec["steps"] * args.steps_scale))
    work = args.work or Path(tempfile.mkdtemp(prefix="mlora-demo-"))
    work = work.resolve()
    out = args.out.resolve()
    try:
        if args.reuse and (work / "hf" / "model.safetensors").exists():
            stats = json.loads((work / "train_stats.json").read_text())
        else:
            if work.exists() and args.work:
                shutil.rmtree(work)
            work.mkdir(parents=True)
            texts = corpora()
            log("corpora (characters): " + ", ".join(f"{k} {len(v)}" for k, v in texts.items()))
            tok = make_tokenizer(texts)
            stats = train_all(work, texts, tok)
            stats["train_wall_seconds"] = round(time.perf_counter() - t_start, 1)
            (work / "train_stats.json").write_text(json.dumps(stats))
        t_export = time.perf_counter()
        for d in ("baked", "olive", "lora", "cache"):
            shutil.rmtree(work / d, ignore_errors=True)
        folder = export(work, out, args.multilora_python)
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(out / "tokenizer.json"))
        prompt_ids = tok.encode(PROMPT).ids
        log("PyTorch + PEFT references")
        ref = torch_references(work, prompt_ids)
        og_tokens = genai_tokens(folder, prompt_ids)
        for label, toks in og_tokens.items():
            agree = toks == [t for t in ref["tokens"][label] if t != SPECIALS.index("</s>")]
            log(f"{label}: onnxruntime-genai tokens equal PyTorch's: {agree}")
            if not agree:
                raise SystemExit(f"{label}: onnxruntime-genai {toks} != PyTorch {ref['tokens'][label]}")
        stats["export_wall_seconds"] = round(time.perf_counter() - t_export, 1)
        reference = {
            "about": "greedy tokens of PyTorch + PEFT; made by scripts/train_demo_model.py",
            "prompt": PROMPT,
            "prompt_ids": prompt_ids,
            "new_tokens": NEW_TOKENS,
            "eos_token_id": SPECIALS.index("</s>"),
            "adapters": list(ADAPTERS),
            "mix": MIX,
            "mix_label": mix_label(),
            "torch": ref["tokens"],
            "min_top2_margin": ref["min_top2_margin"],
            "build": stats,
        }
        (out / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
        write_checksums(out)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        log(f"written to {out}: {size / 1e6:.2f} MB; export and references {stats['export_wall_seconds']:.0f} s")
        for label, toks in ref["tokens"].items():
            log(f"{label:>22}: {tok.decode(toks)!r}")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
