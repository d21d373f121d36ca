"""Helpers shared by the Python tests: error assertions and a tiny FlatBuffers walker used to craft
malformed .onnx_adapter files by patching valid ones (independent of the library's reader)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import List, Optional, Type

import numpy as np
import onnxruntime as ort
import pytest

import multilora as ml

RTOL = 1e-5  # float32
ATOL = 1e-5


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float = RTOL, atol: float = ATOL) -> None:
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64), rtol=rtol, atol=atol
    )


def op_probe_model(
    path: str,
    elem: int,
    extra_inputs: list,
    names: List[str],
    nodes: list,
    inits: list,
    y_shape: Optional[list] = None,
    **attrs: int,
) -> str:
    """Writes a hand-made graph around one ``com.multilora.LoraSlotMatMul`` node named ``probe/LoraSlotMatMul``
    (output ``y``): inputs x, A, B (``elem``), slot, ranks plus ``extra_inputs``; ``names`` are the node's
    inputs, ``nodes`` / ``inits`` anything before it; ``attrs`` its attributes besides ``pair=0``."""
    import onnx
    from onnx import TensorProto, helper

    ins = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", "in"]),
        helper.make_tensor_value_info("A", elem, ["S", "in", "R"]),
        helper.make_tensor_value_info("B", elem, ["S", "R", "out"]),
        helper.make_tensor_value_info("slot", TensorProto.INT64, ["b"]),
        helper.make_tensor_value_info("ranks", TensorProto.INT64, [1, "S"]),
    ] + list(extra_inputs)
    node = helper.make_node(
        "LoraSlotMatMul", names, ["y"], name="probe/LoraSlotMatMul", domain="com.multilora", pair=0, **attrs
    )
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)
    g = helper.make_graph(list(nodes) + [node], "g", ins, [y], initializer=list(inits))
    m = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.multilora", 1)], ir_version=8
    )
    onnx.save(m, str(path))
    return str(path)


class OrtBaseline:
    """onnxruntime's own session and LoRA path (LoraAdapter + RunOptions.add_active_adapter)."""

    def __init__(self, model_path: str) -> None:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        self.session = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])

    def run(self, ids: np.ndarray, adapter_path: Optional[str] = None) -> np.ndarray:
        ro = ort.RunOptions()
        if adapter_path is not None:
            adapter = ort.LoraAdapter()
            adapter.Load(str(adapter_path))
            ro.add_active_adapter(adapter)
        return self.session.run(["logits"], {"input_ids": ids}, ro)[0]


def open_with_adapters(path: str, files: dict[str, str], **options: object):
    """``ml.Model(path, **options)`` and an ``ml.Adapters`` of it with every ``name: file`` of ``files`` loaded."""
    model = ml.Model(path, **options)
    adapters = ml.Adapters(model)
    for name, f in files.items():
        adapters.load(f, name)
    return model, adapters


def assert_error(excinfo: pytest.ExceptionInfo, cls: Type[BaseException], status_name: str, *substrings: str) -> None:
    """The exception is exactly `cls`, has status `status_name`, and its message contains every substring."""
    err = excinfo.value
    assert type(err) is cls, f"expected {cls.__name__}, got {type(err).__name__}: {err}"
    assert isinstance(err, ml.MultiloraError)
    assert err.status_name == status_name, f"{err.status_name} != {status_name}: {err}"
    message = str(err)
    for s in substrings:
        assert s in message, f"{s!r} not in message {message!r}"


# ---- FlatBuffers walking (little endian; see docs/design.md §4 for the .onnx_adapter layout) -------------


def _u16(buf: bytes, pos: int) -> int:
    return struct.unpack_from("<H", buf, pos)[0]


def _i32(buf: bytes, pos: int) -> int:
    return struct.unpack_from("<i", buf, pos)[0]


def _u32(buf: bytes, pos: int) -> int:
    return struct.unpack_from("<I", buf, pos)[0]


def field_pos(buf: bytes, table: int, slot: int) -> Optional[int]:
    """Absolute position of field `slot` of the table at `table`, or None when absent."""
    vtable = table - _i32(buf, table)
    vt_size = _u16(buf, vtable)
    entry = vtable + 4 + 2 * slot
    if entry + 2 > vtable + vt_size:
        return None
    off = _u16(buf, entry)
    return table + off if off else None


def deref(buf: bytes, pos: int) -> int:
    return pos + _u32(buf, pos)


@dataclass
class ParamLayout:
    name: str
    table: int
    dims_start: Optional[int]  # position of dims[0] (int64 each)
    ndims: int
    dtype_pos: Optional[int]
    raw_start: Optional[int]  # position of raw_data[0]
    raw_len: int


ROOT_FORMAT_VERSION, ROOT_ADAPTER_VERSION, ROOT_MODEL_VERSION, ROOT_PARAMETERS = 0, 1, 2, 3
PARAM_NAME, PARAM_DIMS, PARAM_DTYPE, PARAM_RAW = 0, 1, 2, 3


def root(buf: bytes) -> int:
    return _u32(buf, 0)


def params(buf: bytes) -> List[ParamLayout]:
    """The parameters of an .onnx_adapter buffer with the positions of their fields."""
    r = root(buf)
    pv = field_pos(buf, r, ROOT_PARAMETERS)
    if pv is None:
        return []
    vec = deref(buf, pv)
    out = []
    for i in range(_u32(buf, vec)):
        slot = vec + 4 + 4 * i
        table = deref(buf, slot)
        npos = field_pos(buf, table, PARAM_NAME)
        name = ""
        if npos is not None:
            s = deref(buf, npos)
            name = bytes(buf[s + 4 : s + 4 + _u32(buf, s)]).decode()
        dpos = field_pos(buf, table, PARAM_DIMS)
        dims_start, ndims = None, 0
        if dpos is not None:
            d = deref(buf, dpos)
            dims_start, ndims = d + 4, _u32(buf, d)
        rpos = field_pos(buf, table, PARAM_RAW)
        raw_start, raw_len = None, 0
        if rpos is not None:
            rv = deref(buf, rpos)
            raw_start, raw_len = rv + 4, _u32(buf, rv)
        out.append(ParamLayout(name, table, dims_start, ndims, field_pos(buf, table, PARAM_DTYPE), raw_start, raw_len))
    return out


def set_i32(buf: bytearray, pos: int, value: int) -> None:
    struct.pack_into("<i", buf, pos, value)


def set_i64(buf: bytearray, pos: int, value: int) -> None:
    struct.pack_into("<q", buf, pos, value)


def get_i64(buf: bytes, pos: int) -> int:
    return struct.unpack_from("<q", buf, pos)[0]
