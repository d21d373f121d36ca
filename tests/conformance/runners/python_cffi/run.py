#!/usr/bin/env python3
"""Conformance runner: Python over the raw libmultilora.so through cffi (ABI mode, no compiler needed).

The cdef is include/multilora/multilora.h itself with comments, preprocessor lines (but integer
`#define MLORA_*` constants), MLORA_API / MLORA_DEPRECATED and the extern "C" wrapper stripped, so the runner
follows the header by construction. The library is MLORA_LIB_DIR/libmultilora.so (or the default search).

Usage: run.py VECTORS_DIR FIXTURES_DIR [--trace]   prints exactly "N passed, N failed" last.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from cffi import FFI

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python_common"))
from harness import NUMPY_OF_CODE, Binding, Result, TensorSpec, Var, main  # noqa: E402

HEADER = ROOT / "include" / "multilora" / "multilora.h"


def cdef_from_header(text: str) -> str:
    """The header as cffi's cdef wants it."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            m = re.match(r"#define\s+(MLORA_\w+)\s+(-?\d+)\s*$", s)
            if m:
                out.append(f"#define {m.group(1)} {m.group(2)}")
            continue
        if s in ('extern "C" {', "}"):
            continue
        s = s.replace("MLORA_API", "")
        s = re.sub(r'MLORA_DEPRECATED\("(?:[^"\\]|\\.)*"\)', "", s)
        out.append(s)
    return "\n".join(out)


ffi = FFI()
ffi.cdef(cdef_from_header(HEADER.read_text(encoding="utf-8")))


def load_library():
    d = os.environ.get("MLORA_LIB_DIR")
    return ffi.dlopen(os.path.join(d, "libmultilora.so") if d else "libmultilora.so")


class CffiBinding(Binding):
    name = "python-cffi, raw ABI"
    raw = True

    def __init__(self) -> None:
        self.lib = load_library()

    def header_line(self) -> str:
        v = ffi.string(self.lib.mlora_version_string()).decode()
        return f"{self.name} — library {v}, ABI {self.lib.mlora_abi_version()}"

    # ---- helpers ----------------------------------------------------------------------------------------------
    def took(self, res: Result, status: int) -> int:
        res.status_name = ffi.string(self.lib.mlora_status_name(status)).decode()
        if status != 0:
            res.message = ffi.string(self.lib.mlora_last_error_message()).decode("utf-8", "replace")
            if self.lib.mlora_last_error_status() != status:
                res.problems.append("mlora_last_error_status() differs from the returned status")
        return status

    @staticmethod
    def handle(v: Any):
        if v is None:
            return ffi.NULL
        if isinstance(v, Var):
            return v.value
        raise TypeError(f"not a handle argument: {v!r}")

    @staticmethod
    def cstr(v: Any, keep: list):
        if v is None:
            return ffi.NULL
        b = v if isinstance(v, bytes) else str(v).encode("utf-8")
        c = ffi.new("char[]", b)
        keep.append(c)
        return c

    def new_tensor(self, spec: TensorSpec, res: Result):
        shape = ffi.new("int64_t[]", spec.shape or [0])
        data = ffi.from_buffer(spec.data) if spec.data else ffi.NULL
        out = ffi.new("mlora_tensor_t**")
        st = self.lib.mlora_tensor_create(spec.dtype, shape, len(spec.shape), data, len(spec.data), out)
        return st, out[0]

    def read_tensor(self, t) -> np.ndarray:
        d = ffi.new("mlora_dtype_t*")
        shape = ffi.new("int64_t[8]")
        ndim = ffi.new("size_t*")
        ptr = ffi.new("void**")
        nbytes = ffi.new("size_t*")
        assert self.lib.mlora_tensor_dtype(t, d) == 0
        assert self.lib.mlora_tensor_shape(t, shape, 8, ndim) == 0
        assert self.lib.mlora_tensor_data(t, ffi.cast("const void**", ptr), nbytes) == 0
        buf = bytes(ffi.buffer(ptr[0], nbytes[0])) if nbytes[0] else b""
        return np.frombuffer(buf, dtype=NUMPY_OF_CODE[d[0]]).reshape([shape[i] for i in range(ndim[0])]).copy()

    def release(self, value: Any) -> None:
        kind, p = value
        getattr(self.lib, f"mlora_{kind}_release")(p)

    # ---- calls ------------------------------------------------------------------------------------------------
    def execute(self, call: str, a: dict[str, Any], step: dict) -> Result:
        r = Result()
        L = self.lib
        keep: list = []

        def h(name: str):
            v = a.get(name)
            if isinstance(v, Var):
                return v.value[1]
            return self.handle(v)

        def name_call(fn, *pre):
            cap = a.get("capacity")
            n = ffi.new("size_t*")
            if cap is not None:
                buf = ffi.new("char[]", max(cap, 1))
                st = self.took(r, fn(*pre, buf if cap else ffi.NULL, cap, n))
            else:
                size = 4
                while True:
                    buf = ffi.new("char[]", size)
                    st = self.took(r, fn(*pre, buf, size, n))
                    if st != L.MLORA_STATUS_BUFFER_TOO_SMALL or n[0] <= size:
                        break
                    size = n[0]
            if st == 0:
                r.values["name"] = ffi.string(buf).decode("utf-8")
            if st in (0, L.MLORA_STATUS_BUFFER_TOO_SMALL):
                r.values["len"] = n[0]

        if call == "check_binding_abi":
            expected = a.get("expected", L.MLORA_ABI_VERSION)
            lib = L.mlora_abi_version()
            if lib != expected:
                r.status_name = "MLORA_STATUS_VERSION_MISMATCH"
                r.message = (
                    f"multilora ABI mismatch: the library has ABI version {lib}, this binding was built for {expected}"
                )
        elif call == "version_string":
            r.values["value"] = ffi.string(L.mlora_version_string()).decode()
        elif call == "status_name":
            r.values["value"] = ffi.string(L.mlora_status_name(a["status"])).decode()
        elif call == "dtype_name":
            r.values["value"] = ffi.string(L.mlora_dtype_name(a["dtype"])).decode()
        elif call == "dtype_size":
            size = ffi.new("size_t*")
            if self.took(r, L.mlora_dtype_size(a["dtype"], size)) == 0:
                r.values["value"] = size[0]
        elif call == "model_create":
            out = ffi.new("mlora_model_t**")
            if self.took(r, L.mlora_model_create(self.cstr(a.get("path"), keep), h("options"), out)) == 0:
                r.handle = ("model", out[0])
        elif call == "model_options_create":
            out = ffi.new("mlora_model_options_t**")
            if self.took(r, L.mlora_model_options_create(out)) == 0:
                r.handle = ("model_options", out[0])
        elif call == "model_options_set_batch_slots":
            self.took(r, L.mlora_model_options_set_batch_slots(h("options"), int(a["slots"])))
        elif call == "model_batch_slots":
            slots, resident = ffi.new("size_t*"), ffi.new("size_t*")
            if self.took(r, L.mlora_model_batch_slots(h("model"), slots, resident)) == 0:
                r.values.update(slots=slots[0], resident=resident[0])
        elif call.endswith("_release"):
            kind = call[: -len("_release")]
            arg_name = {
                "model": "model",
                "model_options": "options",
                "adapters": "adapters",
                "adapter": "adapter",
                "run_options": "options",
                "tensor": "tensor",
                "generator_params": "params",
                "generator": "generator",
                "engine_options": "options",
                "engine": "engine",
                "request": "request",
            }[kind]
            getattr(L, f"mlora_{call}")(h(arg_name))
        elif call in ("model_input_count", "model_output_count", "model_lora_count"):
            n = ffi.new("size_t*")
            if self.took(r, getattr(L, f"mlora_{call}")(h("model"), n)) == 0:
                r.values["count"] = n[0]
        elif call in ("model_input_name", "model_output_name", "model_lora_name"):
            name_call(getattr(L, f"mlora_{call}"), h("model"), a.get("index", 0))
        elif call == "model_run":
            self.run(r, a, h("model"), h("options"), keep)
        elif call == "tensor_create":
            st, t = self.new_tensor(a["tensor"], r)
            if self.took(r, st) == 0:
                r.handle = ("tensor", t)
        elif call == "tensor_dtype":
            d = ffi.new("mlora_dtype_t*")
            if self.took(r, L.mlora_tensor_dtype(h("tensor"), d)) == 0:
                r.values["dtype"] = d[0]
        elif call == "tensor_shape":
            cap = a.get("capacity", 8)
            shape = ffi.new("int64_t[]", max(cap, 1))
            ndim = ffi.new("size_t*")
            st = self.took(r, L.mlora_tensor_shape(h("tensor"), shape, cap, ndim))
            if st == 0:
                r.values["shape"] = [shape[i] for i in range(ndim[0])]
            if st in (0, L.MLORA_STATUS_BUFFER_TOO_SMALL):
                r.values["ndim"] = ndim[0]
        elif call == "tensor_data":
            ptr = ffi.new("void**")
            nbytes = ffi.new("size_t*")
            if self.took(r, L.mlora_tensor_data(h("tensor"), ffi.cast("const void**", ptr), nbytes)) == 0:
                arr = self.read_tensor(h("tensor"))
                r.values["data"] = arr.ravel().tolist()
                r.values["bytes"] = nbytes[0]
        elif call == "adapters_create":
            out = ffi.new("mlora_adapters_t**")
            if self.took(r, L.mlora_adapters_create(h("model"), out)) == 0:
                r.handle = ("adapters", out[0])
        elif call == "adapters_load":
            self.took(
                r,
                L.mlora_adapters_load(
                    h("adapters"), self.cstr(a.get("path"), keep), self.cstr(a.get("name"), keep), a.get("flags", 0)
                ),
            )
        elif call == "adapters_load_from_memory":
            data = Path(a["data"]).read_bytes()
            self.took(
                r,
                L.mlora_adapters_load_from_memory(
                    h("adapters"), ffi.from_buffer(data), len(data), self.cstr(a.get("name"), keep), a.get("flags", 0)
                ),
            )
        elif call == "adapters_unload":
            self.took(r, L.mlora_adapters_unload(h("adapters"), self.cstr(a.get("name"), keep)))
        elif call == "adapters_names":
            self.names(r, a, h("adapters"))
        elif call == "adapters_get":
            out = ffi.new("mlora_adapter_t**")
            if self.took(r, L.mlora_adapters_get(h("adapters"), self.cstr(a.get("name"), keep), out)) == 0:
                r.handle = ("adapter", out[0])
        elif call == "adapter_open":
            out = ffi.new("mlora_adapter_t**")
            if self.took(r, L.mlora_adapter_open(self.cstr(a.get("path"), keep), out)) == 0:
                r.handle = ("adapter", out[0])
        elif call == "adapter_rank":
            v = ffi.new("int64_t*")
            if self.took(r, L.mlora_adapter_rank(h("adapter"), v)) == 0:
                r.values["rank"] = v[0]
        elif call == "adapter_param_count":
            v = ffi.new("size_t*")
            if self.took(r, L.mlora_adapter_param_count(h("adapter"), v)) == 0:
                r.values["count"] = v[0]
        elif call == "adapter_versions":
            f, av, mv = ffi.new("int32_t*"), ffi.new("int32_t*"), ffi.new("int32_t*")
            if self.took(r, L.mlora_adapter_versions(h("adapter"), f, av, mv)) == 0:
                r.values.update(format_version=f[0], adapter_version=av[0], model_version=mv[0])
        elif call == "run_options_create":
            out = ffi.new("mlora_run_options_t**")
            if self.took(r, L.mlora_run_options_create(out)) == 0:
                r.handle = ("run_options", out[0])
        elif call == "run_options_set_active_adapters":
            names = a.get("names") or []
            ptrs = ffi.new("const char*[]", [self.cstr(n, keep) for n in names] or [ffi.NULL])
            w = a.get("weights")
            weights = ffi.new("float[]", w) if w else ffi.NULL
            self.took(
                r, L.mlora_run_options_set_active_adapters(h("options"), h("adapters"), ptrs, weights, len(names))
            )
        elif call == "run_options_set_active_adapters_per_row":
            self.per_row(r, L.mlora_run_options_set_active_adapters_per_row, h("options"), a, h, keep)
        elif call == "run_options_active_count":
            n = ffi.new("size_t*")
            if self.took(r, L.mlora_run_options_active_count(h("options"), n)) == 0:
                r.values["count"] = n[0]
        elif call.startswith("generator") or call == "generate_until_done":
            self.generation(r, call, a, h, keep)
        elif call.startswith("engine") or call.startswith("request"):
            self.engine(r, call, a, h)
        else:
            raise NotImplementedError(f"call {call}")
        return r

    def engine(self, r: Result, call: str, a: dict, h) -> None:
        L = self.lib
        if call == "engine_options_create":
            out = ffi.new("mlora_engine_options_t**")
            if self.took(r, L.mlora_engine_options_create(out)) == 0:
                r.handle = ("engine_options", out[0])
        elif call.startswith("engine_options_set_"):
            key = {"max_batch_size": "max_batch_size", "max_tokens_per_step": "max_tokens", "max_queue": "max_queue"}
            what = call[len("engine_options_set_") :]
            value = int(a["enable"]) if what == "worker" else int(a[key[what]])
            self.took(r, getattr(L, f"mlora_{call}")(h("options"), value))
        elif call == "engine_create":
            out = ffi.new("mlora_engine_t**")
            if self.took(r, L.mlora_engine_create(h("model"), h("options"), out)) == 0:
                r.handle = ("engine", out[0])
        elif call == "engine_close":
            self.took(r, L.mlora_engine_close(h("engine")))
        elif call == "engine_step":
            more = ffi.new("int32_t*")
            if self.took(r, L.mlora_engine_step(h("engine"), more)) == 0:
                r.values["has_work"] = more[0]
        elif call == "engine_submit":
            tokens = [int(t) for t in a["tokens"]]
            ids = ffi.new("int32_t[]", tokens or [0])
            out = ffi.new("mlora_request_t**")
            if self.took(r, L.mlora_engine_submit(h("engine"), h("params"), ids, len(tokens), out)) == 0:
                r.handle = ("request", out[0])
        elif call == "engine_run_until_done":
            more = ffi.new("int32_t*")
            more[0] = 1
            steps = 0
            while more[0]:
                if steps == a.get("max_steps", 4096):
                    r.problems.append("work left after max_steps steps")
                    return
                if self.took(r, L.mlora_engine_step(h("engine"), more)) != 0:
                    return
                steps += 1
            r.values["steps"] = steps
        elif call in ("request_read", "request_read_all"):
            every = call == "request_read_all"
            cap = 4096 if every else int(a.get("capacity", 256))
            buf = ffi.new("int32_t[]", max(cap, 1))
            n, done = ffi.new("size_t*"), ffi.new("int32_t*")
            tokens: list = []
            for _ in range(100000 if every else 1):
                timeout = -1 if every else int(a.get("timeout_ms", 0))
                if self.took(r, L.mlora_request_read(h("request"), buf if cap else ffi.NULL, cap, timeout, n, done)):
                    return
                tokens += [buf[i] for i in range(n[0])]
                if done[0]:
                    break
            r.values.update(tokens=tokens, count=len(tokens), done=done[0])
        elif call == "request_cancel":
            c = ffi.new("int32_t*")
            if self.took(r, L.mlora_request_cancel(h("request"), c)) == 0:
                r.values["cancelled"] = c[0]
        elif call == "request_finish_reason":
            v = ffi.new("mlora_finish_reason_t*")
            if self.took(r, L.mlora_request_finish_reason(h("request"), v)) == 0:
                r.values["reason"] = v[0]
        elif call == "request_usage":
            p, g = ffi.new("uint64_t*"), ffi.new("uint64_t*")
            if self.took(r, L.mlora_request_usage(h("request"), p, g, ffi.NULL, ffi.NULL)) == 0:
                r.values.update(prompt_tokens=p[0], generated_tokens=g[0])
        else:
            raise NotImplementedError(f"call {call}")

    def generation(self, r: Result, call: str, a: dict, h, keep: list) -> None:
        L = self.lib
        if call == "generator_params_create":
            out = ffi.new("mlora_generator_params_t**")
            if self.took(r, L.mlora_generator_params_create(h("model"), out)) == 0:
                r.handle = ("generator_params", out[0])
        elif call == "generator_params_set_search_number":
            self.took(
                r,
                L.mlora_generator_params_set_search_number(
                    h("params"), self.cstr(a.get("name"), keep), float(a["value"])
                ),
            )
        elif call == "generator_params_set_search_bool":
            self.took(
                r,
                L.mlora_generator_params_set_search_bool(h("params"), self.cstr(a.get("name"), keep), int(a["value"])),
            )
        elif call == "generator_params_get_search_number":
            v = ffi.new("double*")
            if (
                self.took(r, L.mlora_generator_params_get_search_number(h("params"), self.cstr(a.get("name"), keep), v))
                == 0
            ):
                r.values["value"] = v[0]
        elif call == "generator_params_set_active_adapters":
            names = a.get("names") or []
            ptrs = ffi.new("const char*[]", [self.cstr(n, keep) for n in names] or [ffi.NULL])
            w = a.get("weights")
            weights = ffi.new("float[]", w) if w else ffi.NULL
            self.took(
                r, L.mlora_generator_params_set_active_adapters(h("params"), h("adapters"), ptrs, weights, len(names))
            )
        elif call == "generator_params_set_active_adapters_per_row":
            self.per_row(r, L.mlora_generator_params_set_active_adapters_per_row, h("params"), a, h, keep)
        elif call == "generator_set_active_adapters_per_row":
            self.per_row(r, L.mlora_generator_set_active_adapters_per_row, h("generator"), a, h, keep)
        elif call == "generator_create":
            out = ffi.new("mlora_generator_t**")
            if self.took(r, L.mlora_generator_create(h("model"), h("params"), out)) == 0:
                r.handle = ("generator", out[0])
        elif call == "generator_append_tokens":
            tokens = [int(t) for t in a["tokens"]]
            buf = ffi.new("int32_t[]", tokens or [0])
            self.took(r, L.mlora_generator_append_tokens(h("generator"), buf, len(tokens)))
        elif call == "generator_append_token_sequences":
            seqs = [[int(t) for t in seq] for seq in a["sequences"]]
            flat = ffi.new("int32_t[]", [t for seq in seqs for t in seq] or [0])
            lengths = ffi.new("size_t[]", [len(seq) for seq in seqs] or [0])
            self.took(r, L.mlora_generator_append_token_sequences(h("generator"), flat, lengths, len(seqs)))
        elif call == "generator_generate_next_token":
            self.took(r, L.mlora_generator_generate_next_token(h("generator")))
        elif call == "generate_until_done":
            done = ffi.new("int32_t*")
            steps = 0
            while self.took(r, L.mlora_generator_is_done(h("generator"), done)) == 0 and not done[0]:
                if steps == a.get("max_steps", 4096):
                    r.problems.append("not done after max_steps steps")
                    return
                if self.took(r, L.mlora_generator_generate_next_token(h("generator"))) != 0:
                    return
                steps += 1
            if r.status_name == "MLORA_STATUS_OK":
                r.values["steps"] = steps
        elif call == "generator_is_done":
            done = ffi.new("int32_t*")
            if self.took(r, L.mlora_generator_is_done(h("generator"), done)) == 0:
                r.values["done"] = done[0]
        elif call in ("generator_get_sequence", "generator_get_next_tokens"):
            fn = L.mlora_generator_get_sequence if call.endswith("sequence") else L.mlora_generator_get_next_tokens
            pre = (h("generator"), a.get("index", 0)) if call.endswith("sequence") else (h("generator"),)
            cap = a.get("capacity")
            n = ffi.new("size_t*")
            if cap is not None:
                size = cap
                buf = ffi.new("int32_t[]", max(cap, 1))
                st = self.took(r, fn(*pre, buf if cap else ffi.NULL, cap, n))
            else:
                size = 4
                while True:
                    buf = ffi.new("int32_t[]", size)
                    st = self.took(r, fn(*pre, buf, size, n))
                    if st != L.MLORA_STATUS_BUFFER_TOO_SMALL or n[0] <= size:
                        break
                    size = n[0]
            if st == 0:
                r.values["tokens"] = [buf[i] for i in range(min(n[0], size))]
            if st in (0, L.MLORA_STATUS_BUFFER_TOO_SMALL):
                r.values["len"] = n[0]
        else:
            raise NotImplementedError(f"call {call}")

    def per_row(self, r: Result, fn, receiver, a: dict, h, keep: list) -> None:
        """A *_set_active_adapters_per_row call: rows of names and optional per-row weights, flattened row by row."""
        rows = a.get("rows") or []
        flat = [n for row in rows for n in row]
        ptrs = ffi.new("const char*[]", [self.cstr(n, keep) for n in flat] or [ffi.NULL])
        wr = a.get("weights")
        weights = ffi.new("float[]", [float(x) for row in wr for x in row] or [0.0]) if wr is not None else ffi.NULL
        counts = ffi.new("size_t[]", [len(row) for row in rows] or [0])
        self.took(r, fn(receiver, h("adapters"), ptrs, weights, counts, len(rows)))

    def names(self, r: Result, a: dict, reg) -> None:
        L = self.lib
        cap = a.get("capacity")
        n, count = ffi.new("size_t*"), ffi.new("size_t*")
        if cap is not None:
            buf = ffi.new("char[]", max(cap, 1))
            st = self.took(r, L.mlora_adapters_names(reg, buf if cap else ffi.NULL, cap, n, count))
        else:
            size = 0
            while True:
                buf = ffi.new("char[]", max(size, 1))
                st = self.took(r, L.mlora_adapters_names(reg, buf if size else ffi.NULL, size, n, count))
                if st != L.MLORA_STATUS_BUFFER_TOO_SMALL or n[0] <= size:
                    break
                size = n[0]
        if st == 0:
            raw = bytes(ffi.buffer(buf, n[0]))
            r.values["names"] = [x.decode("utf-8") for x in raw.split(b"\0")[: count[0]]]
            r.values["count"] = count[0]
        if st in (0, L.MLORA_STATUS_BUFFER_TOO_SMALL):
            r.values["len"] = n[0]

    def run(self, r: Result, a: dict, model, options, keep: list) -> None:
        L = self.lib
        inputs = a.get("inputs", {})
        names = list(inputs)
        tensors, temps = [], []
        for n in names:
            v = inputs[n]
            if isinstance(v, Var):
                tensors.append(v.value[1])
            else:
                st, t = self.new_tensor(v, r)
                if st != 0:
                    raise RuntimeError(f"could not create input {n}")
                tensors.append(t)
                temps.append(t)
        out_names = a.get("output_names", [])
        n_slots = len(out_names)
        if not out_names and model != ffi.NULL:
            c = ffi.new("size_t*")
            L.mlora_model_output_count(model, c)
            n_slots = c[0]
        slots = ffi.new("mlora_tensor_t*[]", max(n_slots, 1))
        in_names = ffi.new("const char*[]", [self.cstr(n, keep) for n in names] or [ffi.NULL])
        in_t = ffi.new("const mlora_tensor_t*[]", tensors or [ffi.NULL])
        o_names = ffi.new("const char*[]", [self.cstr(n, keep) for n in out_names] or [ffi.NULL])
        st = self.took(r, L.mlora_model_run(model, options, in_names, in_t, len(names), o_names, len(out_names), slots))
        for t in temps:
            L.mlora_tensor_release(t)
        if st != 0:
            if any(slots[i] != ffi.NULL for i in range(n_slots)):
                r.problems.append("a failed run wrote an output slot")
            return
        for i in range(n_slots):
            if out_names:
                name = out_names[i]
            else:
                buf = ffi.new("char[512]")
                ln = ffi.new("size_t*")
                L.mlora_model_output_name(model, i, buf, 512, ln)
                name = ffi.string(buf).decode()
            r.outputs[name] = self.read_tensor(slots[i])
            r.output_handles[name] = ("tensor", slots[i])


if __name__ == "__main__":
    sys.exit(main(CffiBinding(), sys.argv))
