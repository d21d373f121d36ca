#!/usr/bin/env python3
"""Conformance runner: the Python package (``import multilora``), through its public API only.

Mapping of the vector calls onto the package (python/multilora):
  model_create -> ml.Model(path, options); model_options_* -> ml.ModelOptions().set_batch_slots;
  model_batch_slots -> model.batch_slots; *_release -> .close(); model_{input,output,lora}_count -> len(model.inputs /
  outputs / lora_inputs); model_*_name -> the name lists; model_run -> model.run(output_names or None,
  {name: ndarray}, opts) (outputs are numpy arrays; tensor_shape/dtype/data on them read the arrays);
  adapters_* -> ml.Adapters(model).load/load_from_memory/unload/names/info; adapter_open -> ml.Adapter.open;
  run_options_* -> ml.RunOptions().set_active_adapters(adapters, names, weights) / .active_count;
  generator_params_* -> multilora.generation.GeneratorParams(model).set_search_options(name=value) /
  .get_search_option(name) / .set_active_adapters / .set_active_adapters_per_row; generator_* ->
  multilora.generation.Generator(model, params).append_tokens / .append_token_sequences / .generate_next_token /
  .is_done() / .get_sequence(i) / .get_next_tokens() / .set_active_adapters_per_row; the binding-level
  generate_until_done -> `while not g.is_done(): g.generate_next_token()`;
  engine_options_* -> the keyword arguments of ml.Engine(model, max_batch_size=..., max_tokens_per_step=...,
  max_queue=..., worker=...) (the package has no options object: a dict stands for it); engine_create ->
  ml.Engine; engine_close -> engine.shutdown(); engine_step -> engine.step(); engine_submit -> engine.submit;
  binding-level engine_run_until_done -> `while engine.step(): pass`; request_read -> req.read(timeout=0,
  max_tokens=capacity) (done = req.is_done() once nothing is left); request_read_all -> list(req);
  request_cancel -> req.cancel(); request_finish_reason -> the C code of req.finish_reason; request_usage ->
  req.usage.
Steps the package cannot express are counted as skipped, with the reason printed: "level": "raw" steps (NULL
handles, explicit buffer capacities, invalid UTF-8 bytes), tensor_create (the package takes numpy arrays, not
tensor handles) and out-of-range indices (the package returns name lists, it has no per-index call).
Errors: a MultiloraError gives its .status_name. docs/conventions.md §3 has the package raise ValueError naming the
object for use after close(); that ValueError counts as MLORA_STATUS_INVALID_HANDLE, the status every other
binding reports for a released handle (an InvalidHandleError, itself a ValueError, would need no mapping).

Usage: run.py VECTORS_DIR FIXTURES_DIR [--trace]   prints exactly "N passed, N failed" last.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python_common"))
from harness import CODE_OF_NUMPY, Binding, Result, Skip, TensorSpec, Var, main  # noqa: E402

import multilora as ml  # noqa: E402
from multilora.engine import FINISH_REASONS  # noqa: E402
from multilora.generation import Generator, GeneratorParams  # noqa: E402


class EngineOptionsDict(dict):
    """Stands for mlora_engine_options_t: the keyword arguments of ml.Engine."""

    def close(self) -> None:
        pass


class PackageBinding(Binding):
    name = "python package"
    raw = False

    def header_line(self) -> str:
        return (
            f"python package multilora {ml.__version__} at {Path(ml.__file__).parent} — library "
            f"{ml._core.version()}, ABI {ml._core.abi_version()}"
        )

    def release(self, value: Any) -> None:
        if hasattr(value, "close"):
            value.close()

    @staticmethod
    def obj(a: dict, key: str) -> Any:
        v = a.get(key)
        if v is None:
            return None
        if not isinstance(v, Var):
            raise TypeError(f"{key} must be a variable")
        return v.value

    @staticmethod
    def array(spec: TensorSpec) -> np.ndarray:
        if spec.array is None:
            raise Skip("the package takes numpy arrays; this tensor has no consistent numpy form")
        return spec.array

    def execute(self, call: str, a: dict[str, Any], step: dict) -> Result:
        if call == "engine_create" and not self.obj(a, "model").batch_slots.slots:
            # the C engine refuses an unprepared folder; ml.Engine prepares it into its cache instead
            raise Skip("ml.Engine prepares a plain folder itself (tests/python/test_engine.py covers it)")
        r = Result()
        try:
            self._execute(call, a, r)
        except ml.MultiloraError as e:
            r.status_name = e.status_name
            r.message = str(e)
        return r

    def _execute(self, call: str, a: dict[str, Any], r: Result) -> None:
        if call == "check_binding_abi":
            expected = a.get("expected", ml._core.ABI_VERSION)
            lib = ml._core.abi_version()
            if lib != expected:
                r.status_name = "MLORA_STATUS_VERSION_MISMATCH"
                r.message = f"multilora ABI mismatch: the library has ABI version {lib}, the package expects {expected}"
        elif call == "version_string":
            r.values["value"] = ml._core.version()
        elif call == "status_name":
            r.values["value"] = ml._core.status_name(a["status"])
        elif call == "dtype_name":
            r.values["value"] = ml._core.dtype_name(a["dtype"])
        elif call == "dtype_size":
            r.values["value"] = ml._core.dtype_size(a["dtype"])
        elif call == "model_create":
            r.handle = ml.Model(a["path"], self.obj(a, "options"))
        elif call == "model_options_create":
            r.handle = ml.ModelOptions()
        elif call == "model_options_set_batch_slots":
            self.obj(a, "options").set_batch_slots(a["slots"])
        elif call == "model_batch_slots":
            slots = self.obj(a, "model").batch_slots
            r.values.update(slots=slots.slots, resident=slots.resident)
        elif call.endswith("_release"):
            for v in a.values():
                if isinstance(v, Var) and hasattr(v.value, "close"):  # run outputs are plain numpy arrays
                    v.value.close()
        elif call in ("model_input_count", "model_output_count", "model_lora_count"):
            m = self.obj(a, "model")
            attr = {"model_input_count": "inputs", "model_output_count": "outputs", "model_lora_count": "lora_inputs"}
            r.values["count"] = len(getattr(m, attr[call]))
        elif call in ("model_input_name", "model_output_name", "model_lora_name"):
            m = self.obj(a, "model")
            names = {
                "model_input_name": lambda: m.input_names,
                "model_output_name": lambda: m.output_names,
                "model_lora_name": lambda: [x.name for x in m.lora_inputs],
            }[call]()
            i = a.get("index", 0)
            if i >= len(names):
                raise Skip("the package returns name lists; it has no per-index call to fail")
            r.values["name"] = names[i]
        elif call == "model_run":
            m = self.obj(a, "model")
            opts = self.obj(a, "options")
            feeds = {}
            for name, v in a.get("inputs", {}).items():
                feeds[name] = v.value if isinstance(v, Var) else self.array(v)
            out_names = a.get("output_names") or []
            outs = m.run(out_names or None, feeds, opts)
            names = out_names or m.output_names
            for n, arr in zip(names, outs):
                r.outputs[n] = np.asarray(arr)
                r.output_handles[n] = np.asarray(arr)
        elif call == "tensor_create":
            raise Skip("the package has no tensor objects (numpy in, numpy out)")
        elif call == "tensor_dtype":
            t = self.obj(a, "tensor")
            r.values["dtype"] = CODE_OF_NUMPY[np.dtype(t.dtype)]
        elif call == "tensor_shape":
            t = self.obj(a, "tensor")
            r.values["shape"] = list(t.shape)
            r.values["ndim"] = t.ndim
        elif call == "tensor_data":
            t = self.obj(a, "tensor")
            r.values["data"] = t.ravel().tolist()
            r.values["bytes"] = t.nbytes
        elif call == "adapters_create":
            r.handle = ml.Adapters(self.obj(a, "model"))
        elif call in ("adapters_load", "adapters_load_from_memory"):
            reg = self.obj(a, "adapters")
            flags = a.get("flags", 0)
            kw = {"replace": bool(flags & 1), "ignore_model_version": bool(flags & 2)}
            if call == "adapters_load":
                reg.load(a["path"], a["name"], copy=bool(flags & 4), **kw)
            else:
                reg.load_from_memory(Path(a["data"]).read_bytes(), a["name"], **kw)
        elif call == "adapters_unload":
            self.obj(a, "adapters").unload(a["name"])
        elif call == "adapters_names":
            names = self.obj(a, "adapters").names()
            r.values["names"] = list(names)
            r.values["count"] = len(names)
        elif call == "adapters_get":
            r.handle = self.obj(a, "adapters").get(a["name"])
        elif call == "adapter_open":
            r.handle = ml.Adapter.open(a["path"])
        elif call == "adapter_rank":
            r.values["rank"] = self.obj(a, "adapter").rank
        elif call == "adapter_param_count":
            r.values["count"] = len(self.obj(a, "adapter").parameter_names)
        elif call == "adapter_versions":
            ad = self.obj(a, "adapter")
            r.values.update(
                format_version=ad.format_version, adapter_version=ad.adapter_version, model_version=ad.model_version
            )
        elif call == "run_options_create":
            r.handle = ml.RunOptions()
        elif call == "run_options_set_active_adapters":
            self.obj(a, "options").set_active_adapters(self.obj(a, "adapters"), a.get("names") or [], a.get("weights"))
        elif call == "run_options_set_active_adapters_per_row":
            self.obj(a, "options").set_active_adapters_per_row(
                self.obj(a, "adapters"), a.get("rows") or [], a.get("weights")
            )
        elif call == "run_options_active_count":
            r.values["count"] = self.obj(a, "options").active_count
        elif call.startswith("generator") or call == "generate_until_done":
            self._generation(call, a, r)
        elif call.startswith("engine") or call.startswith("request"):
            self._engine(call, a, r)
        else:
            raise NotImplementedError(f"call {call}")

    def _engine(self, call: str, a: dict[str, Any], r: Result) -> None:
        reasons = {v: k for k, v in FINISH_REASONS.items()}
        if call == "engine_options_create":
            r.handle = EngineOptionsDict()
        elif call.startswith("engine_options_set_"):
            what = call[len("engine_options_set_") :]
            value = {"max_batch_size": "max_batch_size", "max_tokens_per_step": "max_tokens", "max_queue": "max_queue"}
            opts = self.obj(a, "options")
            if what == "worker":
                if a["enable"] not in (0, 1):
                    raise ml.InvalidArgumentError(f"worker: {a['enable']} is not 0 or 1")
                opts["worker"] = bool(a["enable"])
            else:
                n = int(a[value[what]])
                low = 0 if what == "max_queue" else 1
                if n < low:
                    raise ml.InvalidArgumentError(f"{what} must be >= {low} (got {n})")
                opts[what] = n
        elif call == "engine_create":
            opts = self.obj(a, "options") or {}
            r.handle = ml.Engine(self.obj(a, "model"), **opts)
        elif call == "engine_close":
            self.obj(a, "engine").shutdown()
        elif call == "engine_step":
            r.values["has_work"] = int(self.obj(a, "engine").step())
        elif call == "engine_submit":
            r.handle = self.obj(a, "engine").submit(self.obj(a, "params"), a["tokens"])
        elif call == "engine_run_until_done":
            engine, steps = self.obj(a, "engine"), 0
            while True:
                if steps == a.get("max_steps", 4096):
                    r.problems.append("work left after max_steps steps")
                    return
                steps += 1
                if not engine.step():
                    break
            r.values["steps"] = steps
        elif call == "request_read":
            req = self.obj(a, "request")
            tokens = req.read(timeout=a.get("timeout_ms", 0) / 1000.0, max_tokens=a.get("capacity", 256))
            done = req.is_done() and not req.read(timeout=0)
            r.values.update(tokens=tokens, count=len(tokens), done=int(done))
        elif call == "request_read_all":
            tokens = list(self.obj(a, "request"))
            r.values.update(tokens=tokens, count=len(tokens), done=1)
        elif call == "request_cancel":
            r.values["cancelled"] = int(self.obj(a, "request").cancel())
        elif call == "request_finish_reason":
            r.values["reason"] = reasons[self.obj(a, "request").finish_reason]
        elif call == "request_usage":
            u = self.obj(a, "request").usage
            r.values.update(prompt_tokens=u.prompt_tokens, generated_tokens=u.generated_tokens)
        else:
            raise NotImplementedError(f"call {call}")

    def _generation(self, call: str, a: dict[str, Any], r: Result) -> None:
        if call == "generator_params_create":
            r.handle = GeneratorParams(self.obj(a, "model"))
        elif call == "generator_params_set_search_number":
            self.obj(a, "params").set_search_options(**{a["name"]: float(a["value"])})
        elif call == "generator_params_set_search_bool":
            self.obj(a, "params").set_search_options(**{a["name"]: bool(a["value"])})
        elif call == "generator_params_get_search_number":
            r.values["value"] = self.obj(a, "params").get_search_option(a["name"])
        elif call == "generator_params_set_active_adapters":
            self.obj(a, "params").set_active_adapters(self.obj(a, "adapters"), a.get("names") or [], a.get("weights"))
        elif call == "generator_params_set_active_adapters_per_row":
            self.obj(a, "params").set_active_adapters_per_row(
                self.obj(a, "adapters"), a.get("rows") or [], a.get("weights")
            )
        elif call == "generator_set_active_adapters_per_row":
            self.obj(a, "generator").set_active_adapters_per_row(
                self.obj(a, "adapters"), a.get("rows") or [], a.get("weights")
            )
        elif call == "generator_create":
            r.handle = Generator(self.obj(a, "model"), self.obj(a, "params"))
        elif call == "generator_append_tokens":
            self.obj(a, "generator").append_tokens(np.asarray(a["tokens"], dtype=np.int32))
        elif call == "generator_append_token_sequences":
            self.obj(a, "generator").append_token_sequences(a["sequences"])
        elif call == "generator_generate_next_token":
            self.obj(a, "generator").generate_next_token()
        elif call == "generator_rewind_to":
            self.obj(a, "generator").rewind_to(a["length"])
        elif call == "generate_until_done":
            g, steps = self.obj(a, "generator"), 0
            while not g.is_done():
                if steps == a.get("max_steps", 4096):
                    r.problems.append("not done after max_steps steps")
                    return
                g.generate_next_token()
                steps += 1
            r.values["steps"] = steps
        elif call == "generator_is_done":
            r.values["done"] = int(self.obj(a, "generator").is_done())
        elif call == "generator_get_sequence":
            seq = self.obj(a, "generator").get_sequence(a.get("index", 0))
            r.values["tokens"] = [int(t) for t in seq]
            r.values["len"] = len(seq)
        elif call == "generator_get_next_tokens":
            tokens = self.obj(a, "generator").get_next_tokens()
            r.values["tokens"] = [int(t) for t in tokens]
            r.values["len"] = len(tokens)
        else:
            raise NotImplementedError(f"call {call}")


if __name__ == "__main__":
    b = PackageBinding()
    sys.exit(main(b, sys.argv))
