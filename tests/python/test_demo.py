"""The demo (scripts/demo.py) on the committed trained model (demo/model/): it succeeds and shows what it
claims, and each of its checks fails when what it checks is broken.

Independent of the demo's own checks: reference.json holds PyTorch + PEFT greedy tokens recorded when the model
was trained (scripts/train_demo_model.py); the texts are decoded here with ``tokenizers`` directly and checked
for the style each adapter was trained on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
from pathlib import Path
from typing import Dict

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "demo" / "model"
REF = json.loads((MODEL / "reference.json").read_text())


def _demo():
    spec = importlib.util.spec_from_file_location("mlora_demo_script", ROOT / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _texts() -> Dict[str, str]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    return {label: tok.decode(ids) for label, ids in REF["torch"].items()}


def _copy(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    shutil.copytree(MODEL, d)
    return d


def _rewrite_sums(folder: Path) -> None:
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(folder).as_posix()}"
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "SHA256SUMS"
    ]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def test_committed_model_is_small_and_listed():
    files = [p for p in MODEL.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 10 * 1024 * 1024
    listed = {line.split(None, 1)[1] for line in (MODEL / "SHA256SUMS").read_text().splitlines() if line}
    assert listed == {p.relative_to(MODEL).as_posix() for p in files if p.name != "SHA256SUMS"}


def test_reference_texts_show_the_styles():
    """The recorded PyTorch texts differ per adapter, in the style each was trained on."""
    texts = _texts()
    labels = ["base", *REF["adapters"], REF["mix_label"]]
    assert sorted(texts) == sorted(labels)
    assert len(set(texts.values())) == len(texts), texts  # five different continuations
    letters = {k: [c for c in v if c.isalpha()] for k, v in texts.items()}
    upper = {k: sum(c.isupper() for c in v) / max(1, len(v)) for k, v in letters.items()}
    assert upper["shout"] > 0.8, texts["shout"]
    assert upper["prose"] < 0.3 and upper["code"] < 0.5, texts
    assert re.search(r"[()=:\[\]]", texts["code"]), texts["code"]


def _columns(out: str) -> Dict[str, str]:
    """The side-by-side block of the demo's output: label -> the column's text (cells joined by spaces)."""
    lines = out.splitlines()
    rule = next(i for i, ln in enumerate(lines) if "─┼─" in ln)
    labels = [c.strip() for c in lines[rule - 1].split("│")]
    cells: Dict[str, list] = {k: [] for k in labels}
    for ln in lines[rule + 1 :]:
        if not ln.strip():
            break
        parts = ln.split("│")  # cells lose their padding: words are compared, not layout
        for k, part in zip(labels, parts):
            cells[k].append(part)
    return {k: " ".join(v) for k, v in cells.items()}


def test_demo_runs_and_checks(capsys):
    assert _demo().main(["--repeats", "1", "--width", "160"]) == 0
    out = capsys.readouterr().out
    assert "checked: 5 rows: batched = alone = PyTorch + PEFT (reference.json)" in out
    assert "1 generator, batch 5, a row per adapter set" in out
    # one run per generated token: 4 batch-1 generators with adapters + the batched one on the LoRA graph, the
    # batch-1 base row on the base-only graph (prepare-batching's companion)
    n = REF["new_tokens"]
    assert f"runs: {5 * n} on the LoRA graph, {n} on the base-only graph" in out
    cols = _columns(out)
    texts = _texts()
    assert list(cols) == ["base", *REF["adapters"], REF["mix_label"]]
    for label, text in texts.items():
        # the same words in the same order as the PyTorch reference (the demo wraps lines and takes the
        # prompt's indentation off)
        assert cols[label].split() == (REF["prompt"] + text).split(), label


def test_demo_rows_layout_when_narrow(capsys):
    assert _demo().main(["--repeats", "1", "--width", "80"]) == 0
    out = capsys.readouterr().out
    assert "─┼─" not in out
    for label in _texts():
        assert f"{label} │ " in out


def test_demo_refuses_a_changed_file(tmp_path):
    d = _copy(tmp_path)
    f = d / "adapters" / "code.onnx_adapter"
    data = bytearray(f.read_bytes())
    data[-8] ^= 0x40  # a bit of the last tensor's data: still a valid file
    f.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="checksum mismatch for .*code.onnx_adapter"):
        _demo().main(["--model", str(d), "--repeats", "1"])


def test_demo_fails_when_tokens_differ_from_pytorch(tmp_path, capsys):
    """Adapters swapped (checksums rewritten to match): the files are valid, the text is wrong."""
    d = _copy(tmp_path)
    a, b = d / "adapters" / "code.onnx_adapter", d / "adapters" / "shout.onnx_adapter"
    tmp = d / "adapters" / "tmp"
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    _rewrite_sums(d)
    assert _demo().main(["--model", str(d), "--repeats", "1"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "code: multilora" in out and "!= PyTorch + PEFT" in out


def test_demo_fails_when_a_batched_row_differs(monkeypatch, capsys):
    demo = _demo()
    real = demo.generate

    def broken(*args, **kw):
        solo, batch, s_ms, b_ms = real(*args, **kw)
        batch = dict(batch)
        batch["prose"] = batch["prose"][:-1] + [(batch["prose"][-1] + 1) % 1024]
        return solo, batch, s_ms, b_ms

    monkeypatch.setattr(demo, "generate", broken)
    assert demo.main(["--repeats", "1"]) == 1
    assert "prose: batched row" in capsys.readouterr().out
