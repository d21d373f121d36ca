"""PEFT LoRA folders: reading/writing safetensors by hand, converting to .onnx_adapter, checking adapters.

Loading a PEFT folder needs nothing from here: ``Adapters.load("peft_dir/", name)`` resolves it in the
native core (every language gets it). This module holds the tools around it:

- :func:`convert` — PEFT folder → ``.onnx_adapter`` for one model (``multilora convert``); the file records
  the model's version and loads in ONNX Runtime too.
- :func:`check` — which parameters of an adapter (file or PEFT folder) match a model (``multilora check``).
- :func:`read_safetensors` / :func:`write_safetensors` — the safetensors format without the
  ``safetensors`` package (8-byte little-endian header length, JSON header, raw little-endian data).
- :func:`write_peft_folder` — the inverse of the core's conversion: our A [in, r] / B [r, out] (scale
  folded in) written as a PEFT folder (A [r, in], B [out, r], scale lora_alpha / r) — for tests and tools.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import stat
import struct
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

__all__ = [
    "read_safetensors",
    "read_safetensors_header",
    "write_safetensors",
    "write_peft_folder",
    "is_peft_folder",
    "convert",
    "check",
    "CheckRow",
    "CheckReport",
]

PathLike = Union[str, "os.PathLike[str]"]

_ST_DTYPES: Dict[str, Any] = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def _bfloat16() -> Any:
    import ml_dtypes

    return ml_dtypes.bfloat16


def read_safetensors(path: PathLike) -> Dict[str, np.ndarray]:
    """{name: array} of a .safetensors file (BF16 as ml_dtypes.bfloat16). Raises ValueError naming the
    file and tensor on a malformed file."""
    p = os.fspath(path)
    with open(p, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{p}: too small for a safetensors file")
    (n,) = struct.unpack_from("<Q", blob, 0)
    if n > len(blob) - 8:
        raise ValueError(f"{p}: header length {n} is beyond the file ({len(blob)} bytes)")
    header = _json_loads(blob[8 : 8 + n], f"{p}: header")
    data = memoryview(blob)[8 + n :]
    out: Dict[str, np.ndarray] = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        dt = _bfloat16() if e["dtype"] == "BF16" else _ST_DTYPES.get(e["dtype"])
        if dt is None:
            raise ValueError(f"{p}: tensor {name!r}: unsupported dtype {e['dtype']}")
        begin, end = e["data_offsets"]
        if not 0 <= begin <= end <= len(data):
            raise ValueError(f"{p}: tensor {name!r}: data_offsets {e['data_offsets']} outside the data")
        arr = np.frombuffer(data[begin:end], dtype=np.dtype(dt).newbyteorder("<"))
        out[name] = arr.reshape(e["shape"]).astype(np.dtype(dt), copy=True)
    return out


def _st_dtype(a: np.ndarray) -> str:
    if a.dtype.name == "bfloat16":
        return "BF16"
    for k, v in _ST_DTYPES.items():
        if a.dtype == np.dtype(v):
            return k
    raise ValueError(f"write_safetensors: unsupported dtype {a.dtype}")


def write_safetensors(path: PathLike, tensors: Mapping[str, Any], metadata: Optional[Mapping[str, str]] = None) -> None:
    """Writes {name: array} as a .safetensors file (names sorted, header padded to 8 bytes)."""
    header: Dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    chunks: List[bytes] = []
    offset = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _st_dtype(a), "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(os.fspath(path), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


def is_peft_folder(path: PathLike) -> bool:
    """True for a directory holding adapter_config.json."""
    p = os.fspath(path)
    return os.path.isdir(p) and os.path.isfile(os.path.join(p, "adapter_config.json"))


def _peft_module(name: str, self_attn: bool) -> str:
    """'model.layers.0.attn.q_proj.lora_A.MatMul.weight' -> 'model.layers.0.self_attn.q_proj'."""
    for half in (".lora_A", ".lora_B"):
        if half in name:
            module = name.split(half)[0]
            break
    else:
        raise ValueError(f"write_peft_folder: {name!r} is not a LoRA A/B parameter name")
    if self_attn:
        module = module.replace(".attn.", ".self_attn.")
    return module


def write_peft_folder(
    folder: PathLike,
    params: Mapping[str, np.ndarray],
    *,
    lora_alpha: float = 8.0,
    use_rslora: bool = False,
    self_attn: bool = True,
    dtype: Any = None,
    config: Optional[Mapping[str, Any]] = None,
) -> None:
    """Writes our adapter parameters (A [in, r], B [r, out], scale folded into B) as a PEFT LoRA folder.

    Every pair must have the same rank r (the config's ``r``); B is divided by the scale
    (lora_alpha / r, or lora_alpha / sqrt(r) with ``use_rslora``) and both are transposed, so loading the
    folder gives ``params`` back (up to rounding). ``self_attn`` spells ``attn`` the way Hugging Face does.
    ``config`` adds/overrides adapter_config.json keys.
    """
    os.makedirs(os.fspath(folder), exist_ok=True)
    ranks = {int(v.shape[1]) for k, v in params.items() if ".lora_A" in k}
    if len(ranks) != 1:
        raise ValueError(f"write_peft_folder: every A needs the same rank, got {sorted(ranks)}")
    r = ranks.pop()
    scale = lora_alpha / (math.sqrt(r) if use_rslora else r)
    tensors: Dict[str, np.ndarray] = {}
    targets = set()
    for name, value in params.items():
        a = np.asarray(value, dtype=np.float64)
        module = _peft_module(name, self_attn)
        targets.add(module.rsplit(".", 1)[-1])
        half = "lora_A" if ".lora_A" in name else "lora_B"
        t = a.T if half == "lora_A" else (a / scale).T
        dt = np.dtype(dtype) if dtype is not None else np.asarray(value).dtype
        tensors[f"base_model.model.{module}.{half}.weight"] = np.ascontiguousarray(t.astype(dt))
    cfg: Dict[str, Any] = {
        "peft_type": "LORA",
        "r": r,
        "lora_alpha": lora_alpha,
        "use_rslora": use_rslora,
        "target_modules": sorted(targets),
        "bias": "none",
        "modules_to_save": None,
        "use_dora": False,
        "rank_pattern": {},
        "alpha_pattern": {},
    }
    cfg.update(config or {})
    with open(os.path.join(os.fspath(folder), "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(os.fspath(folder), "adapter_model.safetensors"), tensors)


# ---- convert --------------------------------------------------------------------------------------------


def _progress(items: Sequence[Any], desc: str, enabled: bool) -> Any:
    if not enabled:
        return items
    try:
        from tqdm import tqdm  # optional: only when installed
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit="param", file=sys.stderr)


def convert(
    peft_dir: PathLike,
    output: PathLike,
    model: Any,
    *,
    dtype: Any = None,
    adapter_version: int = 0,
    progress: bool = False,
) -> Dict[str, Any]:
    """Converts a PEFT LoRA folder into an .onnx_adapter file for ``model`` (a multilora.Model or a path).

    The folder is resolved by the native core exactly as ``Adapters.load`` does (transposed, scale folded
    into B, names of the model's LoRA inputs, the model's LoRA dtype); ``dtype`` (e.g. "float16") casts the
    parameters once more. The file records the model's version (``Model.version``). Returns a summary
    {"output", "parameters", "rank", "dtype", "model_version"}.
    """
    from ._api import Adapters, Model, write_adapter

    own = not isinstance(model, Model)
    m = Model(model) if own else model
    try:
        with Adapters(m) as reg:
            reg.load(peft_dir, "peft")
            params = reg.get("peft").parameters
        version = m.version
        model_dtypes = {li.dtype for li in m.lora_inputs}
    finally:
        if own:
            m.close()
    out: Dict[str, np.ndarray] = {}
    target = None
    if dtype is not None:
        target = _bfloat16() if str(dtype) == "bfloat16" else np.dtype(dtype)
    for name in _progress(list(params), "convert", progress):
        a = params[name]
        out[name] = a.astype(target) if target is not None else a
    write_adapter(output, out, adapter_version, version)
    first = next(iter(out.values()))
    dtype_name = first.dtype.name
    ranks = [int(v.shape[1]) for k, v in out.items() if "lora_A" in k]
    return {
        "output": os.fspath(output),
        "parameters": len(out),
        "rank": max(ranks) if ranks else 0,
        "dtype": dtype_name,
        "model_dtypes": sorted(model_dtypes),
        "model_version": version,
    }


# ---- check ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CheckRow:
    """One line of a check: ``status`` is "ok", "unset" (a model LoRA input the adapter leaves at the base
    model; not a failure), or a mismatch: "unknown" (no such LoRA input), "dtype", "shape", "rank",
    "partner", "model_version", "unsupported" (a PEFT feature or tensor multilora cannot serve), "error"
    (the loader refused the adapter; ``detail`` is its message)."""

    adapter: str
    parameter: str
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "unset")


@dataclasses.dataclass
class CheckReport:
    rows: List[CheckRow]

    @property
    def matched(self) -> int:
        return sum(r.status == "ok" for r in self.rows)

    @property
    def unset(self) -> int:
        return sum(r.status == "unset" for r in self.rows)

    @property
    def mismatched(self) -> int:
        return sum(not r.ok for r in self.rows)


def _partner(name: str) -> str:
    if "lora_A" in name:
        i = name.rfind("lora_A")
        return name[:i] + "lora_B" + name[i + 6 :]
    i = name.rfind("lora_B")
    return name[:i] + "lora_A" + name[i + 6 :] if i >= 0 else ""


def _check_file(path: str, label: str, model: Any, ignore_model_version: bool) -> List[CheckRow]:
    from ._api import Adapter

    lora = {li.name: li for li in model.lora_inputs}
    rows: List[CheckRow] = []
    with Adapter.open(path) as ad:
        params = ad.params
        mv = ad.model_version
    if mv != 0 and mv != model.version and not ignore_model_version:
        rows.append(
            CheckRow(label, "(model_version)", "model_version", f"adapter says {mv}, the model is {model.version}")
        )
    for name, p in params.items():
        li = lora.get(name)
        if li is None:
            rows.append(CheckRow(label, name, "unknown", "not a LoRA input of the model"))
            continue
        if p.dtype != li.dtype:
            rows.append(CheckRow(label, name, "dtype", f"{p.dtype}, the model expects {li.dtype}"))
            continue
        fixed_axis = 1 - li.rank_axis
        if len(p.shape) != 2 or p.shape[fixed_axis] != li.features:
            want = f"[r, {li.features}]" if li.rank_axis == 0 else f"[{li.features}, r]"
            rows.append(CheckRow(label, name, "shape", f"{list(p.shape)}, the model expects {want}"))
            continue
        other = _partner(name)
        if other in lora:
            q = params.get(other)
            if q is None:
                rows.append(CheckRow(label, name, "partner", f"{other!r} is missing"))
                continue
            if len(q.shape) == 2 and q.shape[lora[other].rank_axis] != p.shape[li.rank_axis]:
                rows.append(CheckRow(label, name, "rank", f"rank {p.shape[li.rank_axis]}, {other!r} has another rank"))
                continue
        rows.append(CheckRow(label, name, "ok", f"{p.dtype} {list(p.shape)}"))
    for name in lora:
        if name not in params:
            rows.append(CheckRow(label, name, "unset", "left at the base model"))
    return rows


def _read_json_file(path: PathLike, limit: int = 16 << 20) -> Any:
    """A small JSON file (adapter_config.json) read like the native core reads it: opened without blocking,
    regular files only, at most ``limit`` bytes. Raises OSError (FIFO, directory, device, too big) or
    ValueError (not JSON, invalid UTF-8, or nested too deeply) naming the file."""
    p = os.fspath(path)
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, directory or device)", p)
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"{st.st_size} bytes is over the {limit}-byte limit", p)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            fd = -1
            data = f.read(limit + 1)
    finally:
        if fd >= 0:
            os.close(fd)
    return _json_loads(data, p)


def _json_loads(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{what}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise ValueError(f"{what}: JSON nested too deeply") from None


def read_safetensors_header(path: PathLike) -> Dict[str, Any]:
    """{tensor name: {"dtype", "shape", "data_offsets"}} of a .safetensors file without reading the data."""
    p = os.fspath(path)
    with open(p, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{p}: too small for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > os.path.getsize(p) - 8:
            raise ValueError(f"{p}: header length {n} is beyond the file")
        header = _json_loads(f.read(n), f"{p}: header")
    if not isinstance(header, dict):
        raise ValueError(f"{p}: header is not a JSON object")
    return {k: v for k, v in header.items() if k != "__metadata__"}


def _safetensors_names(path: str) -> List[str]:
    try:
        return sorted(read_safetensors_header(path))
    except (OSError, ValueError):
        return []


def _peft_error_rows(folder: str, label: str, err: Exception) -> List[CheckRow]:
    """One row per thing the loader refused in a PEFT folder (its message names each of them)."""
    import re

    msg = str(err)
    rows: List[CheckRow] = []
    features = re.search(r"unsupported PEFT features in adapter_config\.json: ([^;]*)", msg)
    if features:
        rows.append(CheckRow(label, "(adapter_config.json)", "unsupported", features.group(1)))
    reasons = dict(re.findall(r"'([^']+)' \(([^)]*)\)", msg))
    for name in _safetensors_names(os.path.join(folder, "adapter_model.safetensors")):
        if name in reasons:
            rows.append(CheckRow(label, name, "unsupported", reasons[name]))
        elif f"'{name}'" in msg:
            unmatched = "matching no LoRA input" in msg.split(f"'{name}'")[0]
            rows.append(
                CheckRow(
                    label,
                    name,
                    "unknown" if unmatched else "error",
                    "matches no LoRA input of the model" if unmatched else msg,
                )
            )
    if not rows:
        status_name = getattr(err, "status_name", "error")
        rows.append(CheckRow(label, "(load)", "error", f"{status_name}: {msg}"))
    return rows


def check(model: Any, adapters: Sequence[PathLike], *, ignore_model_version: bool = False) -> CheckReport:
    """Checks adapter files and PEFT folders against ``model`` (a multilora.Model or a path).

    Each adapter is also loaded into a registry of the model (the authoritative check): if that refuses
    it, an "error" row carries the loader's message (which names every offending tensor).
    """
    from ._api import Adapters, Model
    from ._errors import MultiloraError

    own = not isinstance(model, Model)
    m = Model(model) if own else model
    rows: List[CheckRow] = []
    try:
        for path in adapters:
            p = os.fspath(path)
            label = p
            before = len(rows)
            if not os.path.isdir(p):
                try:
                    rows += _check_file(p, label, m, ignore_model_version)
                except MultiloraError as e:
                    rows.append(CheckRow(label, "(file)", "error", f"{e.status_name}: {e}"))
                    continue
            with Adapters(m) as reg:
                try:
                    reg.load(p, "check", ignore_model_version=ignore_model_version)
                except MultiloraError as e:
                    if os.path.isdir(p):
                        rows += _peft_error_rows(p, label, e)
                    elif all(r.ok for r in rows[before:]):
                        rows.append(CheckRow(label, "(load)", "error", f"{e.status_name}: {e}"))
                    continue
                if os.path.isdir(p):
                    info = reg.get("check").params
                    for name, pi in info.items():
                        rows.append(CheckRow(label, name, "ok", f"{pi.dtype} {list(pi.shape)}"))
                    for li in m.lora_inputs:
                        if li.name not in info:
                            rows.append(CheckRow(label, li.name, "unset", "left at the base model"))
    finally:
        if own:
            m.close()
    return CheckReport(rows)
