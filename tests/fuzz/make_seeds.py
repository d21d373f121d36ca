"""Writes the committed seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/).

adapter/:        small valid .onnx_adapter files from both writers (multilora.write_adapter and
                 onnxruntime.AdapterFormat) over several dtypes, zero-width and 3-d parameters, an empty
                 adapter, plus truncations and a few field patches of them.
genai_config/:   the generation fixture's genai_config.json, a minimal one, variants exercising every
                 optional key, and some broken ones.

Seeds are deterministic (seeded), so re-running this script reproduces the committed files.
Usage: python tests/fuzz/make_seeds.py [OUT_DIR]   (default: tests/fuzz/corpus)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import sys
import tempfile
from pathlib import Path
from typing import Dict

import numpy as np
import onnxruntime as ort

import multilora as ml

HERE = Path(__file__).resolve().parent
FIXTURE_CONFIG = HERE.parent / "python" / "fixtures" / "generation" / "lora" / "genai_config.json"


def _put(d: Path, data: bytes, tag: str) -> None:
    name = f"{tag}-{hashlib.sha1(data).hexdigest()[:12]}"
    (d / name).write_bytes(data)


def _ort_write(path: Path, params: Dict[str, np.ndarray], av: int, mv: int) -> None:
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(av)
    fmt.set_model_version(mv)
    fmt.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v)) for k, v in params.items()})
    fmt.export_adapter(str(path))


def adapter_seeds(out: Path) -> None:
    rng = np.random.default_rng(0)
    a = "model.layers.0.attn.q_proj.lora_A.MatMul.weight"
    b = "model.layers.0.attn.q_proj.lora_B.MatMul.weight"
    sets = {
        "lora-f32": {
            a: rng.standard_normal((4, 2)).astype(np.float32),
            b: rng.standard_normal((2, 3)).astype(np.float32),
        },
        "lora-f16": {
            a: rng.standard_normal((3, 1)).astype(np.float16),
            b: rng.standard_normal((1, 2)).astype(np.float16),
        },
        "mixed": {
            "i64": np.arange(3, dtype=np.int64).reshape(3, 1),
            "f64": np.ones((1, 2), np.float64),
            "u8": np.arange(5, dtype=np.uint8).reshape(1, 5),
            "i32_3d": np.arange(8, dtype=np.int32).reshape(2, 2, 2),
        },
        "zero-width": {"z": np.zeros((4, 0), np.float32), "e": np.zeros((0,), np.int16)},
        "empty": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for tag, params in sets.items():
            files = {}
            p = Path(tmp) / f"{tag}-ours.onnx_adapter"
            ml.write_adapter(p, params, adapter_version=1, model_version=2)
            files["ours"] = p.read_bytes()
            if params:  # onnxruntime's writer cannot write an empty parameter set
                q = Path(tmp) / f"{tag}-ort.onnx_adapter"
                _ort_write(q, params, 3, 0)
                files["ort"] = q.read_bytes()
            for who, data in files.items():
                _put(out, data, f"{tag}-{who}")
        # truncations and patches of one small valid file
        base = (Path(tmp) / "lora-f32-ours.onnx_adapter").read_bytes()
        for keep in (0, 8, 12, 16, 24, len(base) // 2, len(base) - 1):
            _put(out, base[:keep], f"trunc{keep}")
        patched = bytearray(base)
        patched[4:8] = b"XXXX"
        _put(out, bytes(patched), "ident")
        root = struct.unpack_from("<I", base, 0)[0]
        patched = bytearray(base)
        struct.pack_into("<i", patched, root, 0x7FFFFFFF)  # vtable offset of the root table
        _put(out, bytes(patched), "vtable")


def config_seeds(out: Path) -> None:
    fixture = json.loads(FIXTURE_CONFIG.read_text())
    _put(out, FIXTURE_CONFIG.read_bytes(), "fixture")
    minimal = {
        "model": {
            "context_length": 16,
            "vocab_size": 8,
            "eos_token_id": 1,
            "decoder": {"filename": "model.onnx", "num_hidden_layers": 1, "head_size": 4, "num_key_value_heads": 1},
        }
    }
    _put(out, json.dumps(minimal).encode(), "minimal")
    full = json.loads(json.dumps(fixture))
    full["model"]["eos_token_id"] = [2, 5]
    full["model"]["decoder"]["session_options"] = {
        "intra_op_num_threads": 1,
        "inter_op_num_threads": 1,
        "graph_optimization_level": "ORT_ENABLE_BASIC",
        "enable_cpu_mem_arena": False,
        "enable_mem_pattern": True,
        "config_entries": {"session.x": "1"},
    }
    full["model"]["decoder"]["inputs"]["position_ids"] = "position_ids"
    full["search"].update({"random_seed": 42, "do_sample": True, "top_p": 0.9, "temperature": 0.7})
    _put(out, json.dumps(full, indent=1).encode(), "full")
    bad = [
        b"",
        b"{}",
        b"[]",
        b'{"model": 1}',
        b'{"model": {"context_length": 1e300}}',
        json.dumps({**minimal, "search": {"max_length": 99}}).encode(),
        json.dumps({**minimal, "search": {"num_beams": 4}}).encode(),
        json.dumps({"model": {**minimal["model"], "eos_token_id": []}}).encode(),
        b'{"model": {"decoder": {"inputs": {"past_key_names": "%s%d"}}}}',
        FIXTURE_CONFIG.read_bytes()[:700],
    ]
    for i, data in enumerate(bad):
        _put(out, data, f"bad{i}")
    # Nesting just past the depth limit (256), and a decoder filename the folder rules refuse.
    _put(out, b'{"model": ' + b"[" * 300 + b"]" * 300 + b"}", "deep")
    escape = json.loads(json.dumps(minimal))
    escape["model"]["decoder"]["filename"] = "../m\u0000.onnx"
    _put(out, json.dumps(escape).encode(), "filename")


def safetensors_seeds(out: Path) -> None:
    """Real PEFT safetensors files from the committed fixtures, plus truncations and a corrupt header."""
    peft = HERE.parent / "python" / "fixtures" / "peft"
    for f in sorted(peft.glob("*/adapter_model.safetensors")):
        data = f.read_bytes()
        _put(out, data, f.parent.name)
        _put(out, data[: len(data) // 2], f"{f.parent.name}-half")
        _put(out, data[:12], f"{f.parent.name}-head")
        n = int.from_bytes(data[:8], "little")
        _put(out, (n + 10**6).to_bytes(8, "little") + data[8:], f"{f.parent.name}-bigheader")
    deep = b"[" * 300 + b"]" * 300
    _put(out, len(deep).to_bytes(8, "little") + deep, "deep")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "corpus"
    for sub, fn in (("adapter", adapter_seeds), ("genai_config", config_seeds), ("safetensors", safetensors_seeds)):
        d = out / sub
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        fn(d)
        print(f"{d}: {len(list(d.iterdir()))} seeds")


if __name__ == "__main__":
    main()
