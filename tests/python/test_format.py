"""Byte compatibility with onnxruntime's .onnx_adapter format, both ways."""

from __future__ import annotations

import ctypes
import os
from typing import Dict

import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest

import multilora as ml
from multilora import testing as T

import support as S
from support import assert_close, assert_error

# numpy dtype name -> ONNX element type; every type both writers and onnxruntime's reader accept
ONNX_TYPES = {
    "float32": 1,
    "uint8": 2,
    "int8": 3,
    "uint16": 4,
    "int16": 5,
    "int32": 6,
    "int64": 7,
    "float16": 10,
    "float64": 11,
    "uint32": 12,
    "uint64": 13,
}


def _sample_params() -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out: Dict[str, np.ndarray] = {}
    for name in ONNX_TYPES:
        dt = np.dtype(name)
        if dt.kind == "f":
            v = rng.standard_normal((3, 5)).astype(dt)
        else:
            info = np.iinfo(dt)
            v = rng.integers(info.min, info.max, size=(3, 5), dtype=dt, endpoint=True)
        out[f"p.{name}"] = v
    out["p.bfloat16"] = rng.standard_normal((2, 7)).astype(ml_dtypes.bfloat16)
    out["p.zero_width"] = np.zeros((4, 0), np.float32)
    out["p.zero_rows"] = np.zeros((0, 6), np.float16)
    out["p.empty_1d"] = np.zeros((0,), np.int64)
    out["p.three_d"] = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    return out


def _ort_bytes(value: ort.OrtValue) -> bytes:
    size = value.tensor_size_in_bytes()
    return ctypes.string_at(value.data_ptr(), size) if size else b""


def test_files_written_by_onnxruntime_read_back_identically(tmp_path):
    params = _sample_params()
    path = tmp_path / "ort_all.onnx_adapter"
    T.write_ort_adapter(path, params, adapter_version=5, model_version=6)
    got = ml.read_adapter(path)
    assert (got.format_version, got.adapter_version, got.model_version) == (1, 5, 6)
    assert set(got.parameters) == set(params)
    for name, expected in params.items():
        value = got.parameters[name]
        assert value.dtype == expected.dtype, name
        assert value.shape == expected.shape, name
        assert value.tobytes() == expected.tobytes(), name
        assert got.dtypes[name] == ("bfloat16" if name == "p.bfloat16" else expected.dtype.name)
    # from memory too
    again = ml.read_adapter(path.read_bytes())
    assert {k: v.tobytes() for k, v in again.parameters.items()} == {k: v.tobytes() for k, v in params.items()}


def test_onnxruntime_files_are_mapped_and_only_misaligned_params_copied(tmp_path):
    params = _sample_params()
    path = tmp_path / "ort_all.onnx_adapter"
    T.write_ort_adapter(path, params)
    raw = path.read_bytes()
    itemsize = {k: v.dtype.itemsize for k, v in params.items()}
    misaligned = sum(p.raw_len for p in S.params(raw) if p.raw_len and p.raw_start % itemsize[p.name])
    with ml.Adapter.open(path) as adapter:
        assert adapter.bytes_mapped == len(raw)
        assert adapter.bytes_copied == misaligned


def test_files_we_write_are_read_by_onnxruntime_identically(tmp_path):
    params = _sample_params()
    path = tmp_path / "ours_all.onnx_adapter"
    ml.write_adapter(path, params, adapter_version=7, model_version=8)
    fmt = ort.AdapterFormat.read_adapter(str(path))
    assert (fmt.get_format_version(), fmt.get_adapter_version(), fmt.get_model_version()) == (1, 7, 8)
    values = fmt.get_parameters()
    assert set(values) == set(params)
    for name, expected in params.items():
        value = values[name]
        code = 16 if name == "p.bfloat16" else ONNX_TYPES[expected.dtype.name]
        assert value.element_type() == code, name
        assert list(value.shape()) == list(expected.shape), name
        assert _ort_bytes(value) == expected.tobytes(), name


def test_we_align_raw_data_to_8_bytes(tmp_path):
    params = _sample_params()
    path = tmp_path / "aligned.onnx_adapter"
    ml.write_adapter(path, params)
    raw = path.read_bytes()
    assert raw[4:8] == b"TORT"
    layouts = S.params(raw)
    assert {p.name for p in layouts} == set(params)
    for p in layouts:
        if p.raw_len:
            assert p.raw_start % 8 == 0, (p.name, p.raw_start)
    with ml.Adapter.open(path) as adapter:
        assert adapter.bytes_copied == 0
        assert adapter.parameter_names == list(params)  # file order is the order given


def test_files_we_write_give_onnxruntime_the_same_run_output(model, adapters, lora_model, sql_ours, baseline, ids):
    adapters.load(sql_ours, "sql")
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, ["sql"])
    (ours,) = model.run(["logits"], {"input_ids": ids}, opts)
    adapter = ort.LoraAdapter()
    adapter.Load(sql_ours)
    ro = ort.RunOptions()
    ro.add_active_adapter(adapter)
    (theirs,) = baseline.session.run(["logits"], {"input_ids": ids}, ro)
    assert_close(ours, theirs)


def test_round_trip_through_both_writers(tmp_path):
    params = _sample_params()
    T.write_ort_adapter(tmp_path / "a.onnx_adapter", params, 1, 2)
    first = ml.read_adapter(tmp_path / "a.onnx_adapter")
    ml.write_adapter(tmp_path / "b.onnx_adapter", first.parameters, first.adapter_version, first.model_version)
    second = ml.read_adapter(tmp_path / "b.onnx_adapter")
    assert (second.adapter_version, second.model_version) == (1, 2)
    assert {k: (v.dtype, v.tobytes()) for k, v in second.parameters.items()} == {
        k: (v.dtype, v.tobytes()) for k, v in first.parameters.items()
    }


def test_bfloat16_as_raw_uint16_bits(tmp_path):
    bits = np.array([[0x3F80, 0x4000], [0xBF80, 0x0000]], np.uint16)  # 1, 2, -1, 0
    ml.write_adapter(tmp_path / "bf.onnx_adapter", {"w": bits}, dtypes={"w": "bfloat16"})
    got = ml.read_adapter(tmp_path / "bf.onnx_adapter")
    assert got.dtypes == {"w": "bfloat16"}
    assert got.parameters["w"].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got.parameters["w"].astype(np.float32), [[1, 2], [-1, 0]])
    assert got.parameters["w"].view(np.uint16).tobytes() == bits.tobytes()
    value = ort.AdapterFormat.read_adapter(str(tmp_path / "bf.onnx_adapter")).get_parameters()["w"]
    assert value.element_type() == 16 and _ort_bytes(value) == bits.tobytes()


def test_write_adapter_converts_array_likes_and_non_contiguous(tmp_path):
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    ml.write_adapter(tmp_path / "w.onnx_adapter", {"t": base.T, "l": [[1.5, 2.5]], "be": base.astype(">f4")})
    got = ml.read_adapter(tmp_path / "w.onnx_adapter").parameters
    np.testing.assert_array_equal(got["t"], base.T)
    assert got["l"].dtype == np.float64 and got["l"].tolist() == [[1.5, 2.5]]
    assert got["be"].dtype == np.float32 and got["be"].dtype.isnative
    np.testing.assert_array_equal(got["be"], base)


def test_write_adapter_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "x.onnx_adapter"
    ml.write_adapter(path, {"a": np.ones((2, 2), np.float32)})
    ml.write_adapter(path, {"b": np.zeros((1, 3), np.float32)}, adapter_version=2)
    got = ml.read_adapter(path)
    assert list(got.parameters) == ["b"] and got.adapter_version == 2
    assert os.listdir(tmp_path) == ["x.onnx_adapter"]  # no temporary left behind


def test_write_adapter_errors(tmp_path):
    with pytest.raises(ml.InvalidArgumentError) as e:
        ml.write_adapter(tmp_path / "e.onnx_adapter", {"": np.zeros(2, np.float32)})
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "empty")
    with pytest.raises(ml.TypeMismatchError) as e:
        ml.write_adapter(tmp_path / "c.onnx_adapter", {"z": np.zeros(2, np.complex64)})
    assert_error(e, ml.TypeMismatchError, "MLORA_STATUS_TYPE_MISMATCH", "'z'", "complex64")
    with pytest.raises(ml.TypeMismatchError) as e:
        ml.write_adapter(tmp_path / "r.onnx_adapter", {"f": np.zeros(2, np.float32)}, dtypes={"f": "bfloat16"})
    assert_error(e, ml.TypeMismatchError, "MLORA_STATUS_TYPE_MISMATCH", "'f'", "float32", "bfloat16")
    with pytest.raises(ValueError, match="not given"):
        ml.write_adapter(tmp_path / "n.onnx_adapter", {"f": np.zeros(2)}, dtypes={"g": "float32"})
    with pytest.raises(ml.MultiloraIOError) as e:
        ml.write_adapter(tmp_path / "no" / "such" / "dir.onnx_adapter", {"f": np.zeros(2, np.float32)})
    assert_error(e, ml.MultiloraIOError, "MLORA_STATUS_IO", "dir.onnx_adapter")
    with pytest.raises(TypeError):
        ml.write_adapter(tmp_path / "t.onnx_adapter", [("f", np.zeros(2))])  # type: ignore[arg-type]


def test_read_adapter_errors(tmp_path):
    with pytest.raises(ml.MultiloraFileNotFoundError) as e:
        ml.read_adapter(tmp_path / "none.onnx_adapter")
    assert_error(e, ml.MultiloraFileNotFoundError, "MLORA_STATUS_NOT_FOUND", "none.onnx_adapter")
    with pytest.raises(ml.FormatError) as e:
        ml.read_adapter(b"\x00" * 64)
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "TORT")


def test_adapter_open_reports_rank_and_versions(sql_ort, params_sql):
    with ml.Adapter.open(sql_ort) as adapter:
        assert adapter.rank == 4
        assert adapter.adapter_version == 3 and adapter.format_version == 1
        assert adapter.name == sql_ort
        assert set(adapter.dtypes.values()) == {"float32"}
        assert sum(p.nbytes for p in adapter.params.values()) == sum(v.nbytes for v in params_sql.values())
