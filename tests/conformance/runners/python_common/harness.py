"""The part of the Python conformance runners that does not depend on the binding under test.

It reads the vectors (tests/conformance/README.md describes the schema), resolves arguments (fixture paths,
variables, reference tensors, raw UTF-8 bytes), checks each step's status, message, values and outputs, binds
results to variables and prints the summary. A binding adapter (a subclass of Binding) turns one call into
calls of the binding under test and returns what happened.
"""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DTYPES = {
    "float32": (1, np.float32),
    "uint8": (2, np.uint8),
    "int8": (3, np.int8),
    "int32": (6, np.int32),
    "int64": (7, np.int64),
    "bool": (9, np.bool_),
    "float16": (10, np.float16),
    "float64": (11, np.float64),
}
NUMPY_OF_CODE = {code: np.dtype(t) for code, t in DTYPES.values()}
CODE_OF_NUMPY = {np.dtype(t): code for code, t in DTYPES.values()}
LOAD_FLAGS = {
    "MLORA_LOAD_DEFAULT": 0,
    "MLORA_LOAD_REPLACE": 1,
    "MLORA_LOAD_IGNORE_MODEL_VERSION": 2,
    "MLORA_LOAD_COPY": 4,
}


class Skip(Exception):
    """The binding cannot express this step (e.g. a raw-level step for an idiomatic-only binding)."""


@dataclass
class TensorSpec:
    """A tensor argument: dtype code, shape and the raw bytes (kept as given, even if inconsistent)."""

    dtype: int
    shape: list[int]
    data: bytes
    array: np.ndarray | None  # the same as a numpy array when dtype and size agree


@dataclass
class Result:
    status_name: str = "MLORA_STATUS_OK"
    message: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    handle: Any = None  # what a create/get call produced
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # model_run outputs by name
    output_handles: dict[str, Any] = field(default_factory=dict)  # the same as binding objects, for "out"
    problems: list[str] = field(default_factory=list)  # binding-level inconsistencies seen during the call


@dataclass
class Var:
    value: Any
    released: bool = False
    is_handle: bool = True  # False for plain values bound from a call's result fields


class Binding:
    """What a runner implements. `vars` maps names to Var; handles are whatever the binding uses."""

    name = "?"
    raw = False  # can it run steps marked "level": "raw"?

    def execute(self, call: str, args: dict[str, Any], step: dict) -> Result:
        raise NotImplementedError

    def release(self, value: Any) -> None:
        """Releases a handle the scenario still holds at its end."""

    def header_line(self) -> str:
        return self.name

    def notes(self) -> list[str]:
        """Lines printed before the summary (how the binding's spelling of a status was read, ...)."""
        return []


class Harness:
    def __init__(self, binding: Binding, vectors: Path, fixtures: Path):
        self.b = binding
        self.vectors = vectors
        self.fixtures = fixtures
        self.reference = json.loads((fixtures / "reference.json").read_text(encoding="utf-8"))
        self.vars: dict[str, Var] = {}
        self.order: list[str] = []
        self.skipped_vars: set[str] = set()  # bound by a step that was skipped
        self.passed = self.failed = self.skipped = 0

    # ---- arguments --------------------------------------------------------------------------------------
    def resolve(self, v: Any, key: str = "") -> Any:
        if isinstance(v, str):
            if v.startswith("@fixtures/"):
                return str(self.fixtures / v[len("@fixtures/") :])
            if v.startswith("$"):
                name = v[1:]
                if name in self.skipped_vars:
                    raise Skip(f"uses {v}, which a skipped step would have bound")
                if name not in self.vars:
                    raise LookupError(f"unbound variable {v}")
                return self.vars[name]
            return v
        if isinstance(v, dict):
            if "utf8_hex" in v:
                return bytes.fromhex(v["utf8_hex"])
            if "value_ref" in v:
                return self.value_ref(v)
            if key in ("tensor",) or "dtype" in v or "ref" in v:
                return self.tensor_spec(v)
            return {k: self.resolve(x, k) for k, x in v.items()}
        if isinstance(v, list):
            if key == "flags":
                out = 0
                for f in v:
                    out |= LOAD_FLAGS[f]
                return out
            return [self.resolve(x) for x in v]
        return v

    def value_ref(self, v: Any) -> Any:
        """{"value_ref": name} -> reference.json's values[name]; anything else as it is."""
        if isinstance(v, dict) and "value_ref" in v:
            return self.reference["values"][v["value_ref"]]
        return v

    def tensor_spec(self, v: dict) -> TensorSpec:
        if "ref" in v:
            v = self.reference["tensors"][v["ref"]]
        dt = v["dtype"]
        code = dt if isinstance(dt, int) else DTYPES[dt][0]
        shape = [int(x) for x in v["shape"]]
        if "data_hex" in v:
            data = bytes.fromhex(v["data_hex"])
        else:
            npdt = NUMPY_OF_CODE.get(code)
            if npdt is None:
                raise ValueError(f"tensor spec: no numpy type for dtype {dt}")
            if "data" in v:
                values = v["data"]
            else:
                count = int(np.prod([max(d, 0) for d in shape])) if shape else 1
                values = [v.get("fill", 0)] * count
            data = np.asarray(values, dtype=npdt).tobytes()
        array = None
        npdt = NUMPY_OF_CODE.get(code)
        if npdt is not None and all(d >= 0 for d in shape):
            count = int(np.prod(shape)) if shape else 1
            if count * npdt.itemsize == len(data):
                array = np.frombuffer(data, dtype=npdt).reshape(shape).copy()
        return TensorSpec(code, shape, data, array)

    # ---- running --------------------------------------------------------------------------------------------
    def run_all(self) -> int:
        print(f"conformance ({self.b.header_line()})")
        for path in sorted(self.vectors.glob("*.json")):
            self.run_scenario(path)
        for line in self.b.notes():
            print(f"note: {line}")
        if self.skipped:
            print(f"{self.skipped} skipped (steps this binding cannot express; see the runner's notes)")
        print(f"{self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0

    def run_scenario(self, path: Path) -> None:
        doc = json.loads(path.read_text(encoding="utf-8"))
        name = doc.get("name", path.stem)
        p0, f0, s0 = self.passed, self.failed, self.skipped
        tol = doc.get("tolerance", {})
        for step in doc["steps"]:
            sid = f"{name}/{step.get('id', '?')}"
            try:
                if step.get("level") == "raw" and not self.b.raw:
                    raise Skip("raw-level step")
                args = {k: self.resolve(v, k) for k, v in step.get("args", {}).items()}
                res = self.b.execute(step["call"], args, step)
                err = self.check(step, res, tol)
                self.bind(step, res)
                if step["call"].endswith("_release"):
                    for v in args.values():
                        if isinstance(v, Var):
                            v.released = True
            except Skip as e:
                out = step.get("out")
                self.skipped_vars.update([out] if isinstance(out, str) else (out or {}).values())
                self.skipped += 1
                print(f"SKIP {sid}: {e}")
                continue
            except Exception as e:  # a runner bug or an unexpected exception from the binding
                err = f"{type(e).__name__}: {e}"
                if "--trace" in sys.argv:
                    traceback.print_exc()
            if err:
                self.failed += 1
                print(f"FAIL {sid}: {err}")
            else:
                self.passed += 1
        for n in reversed(self.order):
            v = self.vars[n]
            if v.is_handle and not v.released:
                try:
                    self.b.release(v.value)
                except Exception as e:  # noqa: BLE001 - reported, not fatal
                    print(f"note: releasing {n} raised {e!r}")
        self.vars.clear()
        self.order.clear()
        self.skipped_vars.clear()
        print(
            f"{name:<10} {self.passed - p0} passed, {self.failed - f0} failed"
            + (f", {self.skipped - s0} skipped" if self.skipped - s0 else "")
        )

    def check(self, step: dict, res: Result, tol: dict) -> str:
        expect = step.get("expect", {})
        want = expect.get("status", "MLORA_STATUS_OK")
        if res.status_name != want:
            return f"status {res.status_name}, expected {want} (message: {res.message})"
        if res.problems:
            return "; ".join(res.problems)
        if want != "MLORA_STATUS_OK" and not res.message:
            return "failed with an empty message"
        subs = expect.get("message", [])
        for s in [subs] if isinstance(subs, str) else subs:
            if s not in res.message:
                return f"message {res.message!r} lacks {s!r}"
        for k, v in expect.get("values", {}).items():
            v = self.value_ref(v)
            if k not in res.values:
                return f"value {k} missing (got {sorted(res.values)})"
            if not same(res.values[k], v):
                return f"value {k} is {res.values[k]!r}, expected {v!r}"
        for k, spec in expect.get("outputs", {}).items():
            if k not in res.outputs:
                return f"output {k} missing (got {sorted(res.outputs)})"
            ref = self.reference["tensors"][spec["ref"]]
            exp = np.asarray(ref["data"], dtype=np.float64).reshape(ref["shape"])
            got = res.outputs[k]
            if list(got.shape) != list(exp.shape):
                return f"output {k} has shape {list(got.shape)}, expected {list(exp.shape)}"
            if got.dtype != np.float32:
                return f"output {k} has dtype {got.dtype}, expected float32"
            atol = spec.get("atol", tol.get("atol", 1e-5))
            rtol = spec.get("rtol", tol.get("rtol", 1e-5))
            if not np.allclose(got.astype(np.float64), exp, atol=atol, rtol=rtol):
                err = float(np.max(np.abs(got - exp)))
                return f"output {k} differs from {spec['ref']} (max abs error {err:.3g})"
        return ""

    def bind(self, step: dict, res: Result) -> None:
        out = step.get("out")
        if isinstance(out, str):
            if res.status_name == "MLORA_STATUS_OK" and res.handle is not None:
                self._set(out, res.handle)
                res.handle = None
        elif isinstance(out, dict):
            for k, target in out.items():
                if k in res.output_handles:
                    self._set(target, res.output_handles.pop(k))
                elif k in res.values:
                    self._set(target, res.values[k], is_handle=False)
        if res.handle is not None:
            self.b.release(res.handle)
        for h in res.output_handles.values():
            self.b.release(h)

    def _set(self, name: str, value: Any, is_handle: bool = True) -> None:
        self.vars[name] = Var(value, is_handle=is_handle)
        self.order.append(name)


def same(got: Any, want: Any) -> bool:
    if isinstance(want, list):
        return isinstance(got, (list, tuple)) and len(got) == len(want) and all(same(a, b) for a, b in zip(got, want))
    if isinstance(want, bool) or want is None:
        return got is want or got == want
    if isinstance(want, (int, float)) and isinstance(got, (int, float, np.integer, np.floating)):
        return got == want
    return got == want


def main(binding: Binding, argv: list[str]) -> int:
    args = [a for a in argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        print(f"usage: {argv[0]} VECTORS_DIR FIXTURES_DIR [--trace]", file=sys.stderr)
        return 2
    return Harness(binding, Path(args[0]), Path(args[1])).run_all()
