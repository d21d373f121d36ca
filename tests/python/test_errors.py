"""Every bad input gets a named error: class, status name, and a message naming the subject."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

import multilora as ml
from multilora import _core

import support as S
from support import assert_error

A0 = "model.layers.0.attn.q_proj.lora_A.MatMul.weight"
B0 = "model.layers.0.attn.q_proj.lora_B.MatMul.weight"


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def good(sql_ort: str) -> bytes:
    return Path(sql_ort).read_bytes()


# ---- exception classes -----------------------------------------------------------------------------

STATUS_CLASSES = [
    (1, "MLORA_STATUS_INVALID_ARGUMENT", ml.InvalidArgumentError, ValueError),
    (2, "MLORA_STATUS_INVALID_HANDLE", ml.InvalidHandleError, ValueError),
    (3, "MLORA_STATUS_NOT_FOUND", ml.NotFoundError, KeyError),
    (4, "MLORA_STATUS_ALREADY_EXISTS", ml.AlreadyExistsError, ValueError),
    (5, "MLORA_STATUS_IN_USE", ml.InUseError, RuntimeError),
    (6, "MLORA_STATUS_IO", ml.MultiloraIOError, OSError),
    (7, "MLORA_STATUS_FORMAT", ml.FormatError, ValueError),
    (8, "MLORA_STATUS_SHAPE_MISMATCH", ml.ShapeMismatchError, ValueError),
    (9, "MLORA_STATUS_OUT_OF_MEMORY", ml.MultiloraMemoryError, MemoryError),
    (10, "MLORA_STATUS_BUFFER_TOO_SMALL", ml.BufferTooSmallError, RuntimeError),
    (11, "MLORA_STATUS_VERSION_MISMATCH", ml.VersionMismatchError, ValueError),
    (12, "MLORA_STATUS_RUNTIME", ml.OnnxRuntimeError, RuntimeError),
    (13, "MLORA_STATUS_INTERNAL", ml.InternalError, RuntimeError),
    (14, "MLORA_STATUS_TYPE_MISMATCH", ml.TypeMismatchError, TypeError),
    (15, "MLORA_STATUS_BUSY", ml.BusyError, RuntimeError),
]


@pytest.mark.parametrize("status,name,cls,builtin", STATUS_CLASSES)
def test_each_status_raises_its_class_with_the_text_verbatim(status, name, cls, builtin):
    assert _core.status_name(status) == name
    message = f"subject 'x': expected [1, 2], got [3] — status {status}"
    with pytest.raises(cls) as e:
        _core.raise_status(status, message)
    assert_error(e, cls, name, message)
    assert str(e.value) == message  # verbatim, even for KeyError
    assert e.value.status == status
    assert isinstance(e.value, ml.MultiloraError) and isinstance(e.value, RuntimeError)
    assert isinstance(e.value, builtin)
    copy = pickle.loads(pickle.dumps(e.value))
    assert type(copy) is cls and str(copy) == message and copy.status_name == name


def test_unknown_status_is_a_plain_multilora_error():
    with pytest.raises(ml.MultiloraError) as e:
        _core.raise_status(99, "odd")
    assert type(e.value) is ml.MultiloraError
    assert e.value.status == 99 and e.value.status_name == "MLORA_STATUS_UNKNOWN"


def test_not_found_classes():
    # One status, three classes by what is missing: a name (KeyError), an adapter name, a file (OSError).
    assert issubclass(ml.AdapterNotFoundError, ml.NotFoundError) and issubclass(ml.NotFoundError, KeyError)
    assert issubclass(ml.MultiloraFileNotFoundError, FileNotFoundError)
    assert not issubclass(ml.MultiloraFileNotFoundError, KeyError)
    assert not issubclass(ml.AdapterNotFoundError, OSError)
    for cls in (ml.NotFoundError, ml.AdapterNotFoundError, ml.MultiloraFileNotFoundError):
        assert cls.status == 3 and cls.status_name == "MLORA_STATUS_NOT_FOUND"


# ---- adapter files ---------------------------------------------------------------------------------


def test_missing_file(adapters, tmp_path):
    path = str(tmp_path / "missing.onnx_adapter")
    with pytest.raises(ml.MultiloraFileNotFoundError) as e:
        adapters.load(path, "x")
    assert_error(e, ml.MultiloraFileNotFoundError, "MLORA_STATUS_NOT_FOUND", "missing.onnx_adapter")
    assert isinstance(e.value, FileNotFoundError) and not isinstance(e.value, KeyError)
    assert e.value.filename == path


def test_directory_instead_of_file(adapters, tmp_path):
    with pytest.raises(ml.MultiloraIOError) as e:
        adapters.load(tmp_path, "x")
    assert_error(e, ml.MultiloraIOError, "MLORA_STATUS_IO", str(tmp_path))
    assert isinstance(e.value, OSError)


@pytest.mark.parametrize("keep", [0, 6, 11, 100, -1])
def test_truncated_file(adapters, good, tmp_path, keep):
    cut = good[:keep] if keep >= 0 else good[: len(good) // 2]
    path = _write(tmp_path / "truncated.onnx_adapter", cut)
    with pytest.raises(ml.FormatError) as e:
        adapters.load(path, "x")
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "truncated.onnx_adapter", f"{len(cut)} bytes")
    assert adapters.names() == []


def test_wrong_identifier(adapters, good, tmp_path):
    bad = bytearray(good)
    bad[4:8] = b"ABCD"
    path = _write(tmp_path / "ident.onnx_adapter", bytes(bad))
    with pytest.raises(ml.FormatError) as e:
        adapters.load(path, "x")
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "ident.onnx_adapter", "ABCD", "TORT")


@pytest.mark.parametrize("version", [0, 2, -1])
def test_format_version_not_1(adapters, good, tmp_path, version):
    bad = bytearray(good)
    S.set_i32(bad, S.field_pos(bad, S.root(bad), S.ROOT_FORMAT_VERSION), version)
    path = _write(tmp_path / "fv.onnx_adapter", bytes(bad))
    with pytest.raises(ml.FormatError) as e:
        adapters.load(path, "x")
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "fv.onnx_adapter", f"format_version {version}", "expected 1")
    with pytest.raises(ml.FormatError):
        ml.read_adapter(path)


def test_raw_data_size_differs_from_dims(adapters, good, tmp_path):
    bad = bytearray(good)
    p = S.params(bad)[0]
    rows = S.get_i64(bad, p.dims_start)
    S.set_i64(bad, p.dims_start, rows + 1)
    path = _write(tmp_path / "raw.onnx_adapter", bytes(bad))
    with pytest.raises(ml.FormatError) as e:
        adapters.load(path, "x")
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "raw.onnx_adapter", p.name, str(p.raw_len), f"[{rows + 1}, ")


def test_unknown_data_type_in_file(adapters, good, tmp_path):
    bad = bytearray(good)
    p = S.params(bad)[0]
    S.set_i32(bad, p.dtype_pos, 99)
    path = _write(tmp_path / "dt.onnx_adapter", bytes(bad))
    with pytest.raises(ml.FormatError) as e:
        adapters.load(path, "x")
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "dt.onnx_adapter", p.name, "99")


def test_garbage_from_memory(adapters):
    with pytest.raises(ml.FormatError) as e:
        adapters.load_from_memory(b"definitely not an adapter file", "junk")
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "junk", "TORT")


def test_unknown_parameter_name(adapters, params_sql, tmp_path):
    extra = dict(params_sql)
    unknown = "model.layers.9.attn.q_proj.lora_A.MatMul.weight"
    extra[unknown] = np.zeros((16, 4), np.float32)
    extra[unknown.replace("lora_A", "lora_B")] = np.zeros((4, 16), np.float32)
    path = str(tmp_path / "unknown.onnx_adapter")
    ml.write_adapter(path, extra)
    with pytest.raises(ml.NotFoundError) as e:
        adapters.load(path, "x")
    assert_error(e, ml.NotFoundError, "MLORA_STATUS_NOT_FOUND", "unknown.onnx_adapter", unknown, "model.onnx")
    assert type(e.value) is ml.NotFoundError  # a parameter name, neither an adapter name nor a file
    assert adapters.names() == []


def test_dtype_mismatch(adapters, params_sql, tmp_path):
    half = {k: v.astype(np.float16) for k, v in params_sql.items()}
    path = str(tmp_path / "f16.onnx_adapter")
    ml.write_adapter(path, half)
    with pytest.raises(ml.TypeMismatchError) as e:
        adapters.load(path, "x")
    assert_error(e, ml.TypeMismatchError, "MLORA_STATUS_TYPE_MISMATCH", "f16.onnx_adapter", "float16", "float32")
    assert isinstance(e.value, TypeError)


@pytest.mark.parametrize(
    "name,shape,fragments",
    [
        (A0, (12, 4), ["[12, 4]", "[16, "]),  # wrong in features
        (B0, (4, 20), ["[4, 20]", ", 16]"]),  # wrong out features
        (A0, (16, 4, 1), ["[16, 4, 1]"]),  # wrong number of dims
    ],
)
def test_shape_mismatch(adapters, params_sql, tmp_path, name, shape, fragments):
    bad: Dict[str, np.ndarray] = dict(params_sql)
    bad[name] = np.zeros(shape, np.float32)
    path = str(tmp_path / "shape.onnx_adapter")
    ml.write_adapter(path, bad)
    with pytest.raises(ml.ShapeMismatchError) as e:
        adapters.load(path, "x")
    assert_error(e, ml.ShapeMismatchError, "MLORA_STATUS_SHAPE_MISMATCH", "shape.onnx_adapter", name, *fragments)


def test_rank_of_a_and_b_differ(adapters, params_sql, tmp_path):
    bad = dict(params_sql)
    bad[A0] = np.zeros((16, 5), np.float32)
    path = str(tmp_path / "rank.onnx_adapter")
    ml.write_adapter(path, bad)
    with pytest.raises(ml.ShapeMismatchError) as e:
        adapters.load(path, "x")
    assert_error(e, ml.ShapeMismatchError, "MLORA_STATUS_SHAPE_MISMATCH", "rank.onnx_adapter", A0, B0, "5", "4")


def test_a_without_b(adapters, params_sql, tmp_path):
    half = {k: v for k, v in params_sql.items() if k != A0}
    path = str(tmp_path / "half.onnx_adapter")
    ml.write_adapter(path, half)
    with pytest.raises(ml.FormatError) as e:
        adapters.load(path, "x")
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "half.onnx_adapter", B0, A0)


def test_duplicate_name(adapters, sql_ours, chat_ours):
    adapters.load(sql_ours, "sql")
    with pytest.raises(ml.AlreadyExistsError) as e:
        adapters.load(chat_ours, "sql")
    assert_error(e, ml.AlreadyExistsError, "MLORA_STATUS_ALREADY_EXISTS", "'sql'", "replace")
    with pytest.raises(ml.AlreadyExistsError):
        adapters.load_from_memory(Path(chat_ours).read_bytes(), "sql")


def test_empty_adapter_name(adapters, sql_ours):
    with pytest.raises(ml.InvalidArgumentError) as e:
        adapters.load(sql_ours, "")
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "name")


# ---- set_active_adapters ---------------------------------------------------------------------------


@pytest.fixture
def loaded(adapters, sql_ours, chat_ours):
    adapters.load(sql_ours, "sql")
    adapters.load(chat_ours, "chat")
    return adapters


def test_unknown_name_in_set_active_adapters(loaded):
    opts = ml.RunOptions()
    with pytest.raises(ml.AdapterNotFoundError) as e:
        opts.set_active_adapters(loaded, ["sql", "nope"])
    assert_error(e, ml.AdapterNotFoundError, "MLORA_STATUS_NOT_FOUND", "'nope'")
    assert isinstance(e.value, KeyError)
    assert opts.active_count == 0  # unchanged on failure


@pytest.mark.parametrize("weights", [[1.0], [1.0, 2.0, 3.0], []])
def test_weights_length_mismatch(loaded, weights):
    opts = ml.RunOptions()
    with pytest.raises(ml.InvalidArgumentError) as e:
        opts.set_active_adapters(loaded, ["sql", "chat"], weights)
    assert_error(
        e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "2 adapter names", f"{len(weights)} weights"
    )
    assert isinstance(e.value, ValueError)


def test_duplicate_name_in_active_set(loaded):
    opts = ml.RunOptions()
    with pytest.raises(ml.InvalidArgumentError) as e:
        opts.set_active_adapters(loaded, ["sql", "sql"])
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "'sql'")


@pytest.mark.parametrize("weight", [float("nan"), float("inf")])
def test_non_finite_weight(loaded, weight):
    opts = ml.RunOptions()
    with pytest.raises(ml.InvalidArgumentError) as e:
        opts.set_active_adapters(loaded, ["sql"], [weight])
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "'sql'", "finite")


def test_names_given_without_a_registry():
    opts = ml.RunOptions()
    with pytest.raises(ml.InvalidArgumentError) as e:
        opts.set_active_adapters(None, ["sql"])
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "adapters")


def test_get_of_unknown_name(loaded):
    with pytest.raises(ml.AdapterNotFoundError) as e:
        loaded.get("nope")
    assert_error(e, ml.AdapterNotFoundError, "MLORA_STATUS_NOT_FOUND", "'nope'", "'chat', 'sql'")
    assert isinstance(e.value, KeyError)


# ---- models -------------------------------------------------------------------------------------------


def test_missing_tokenizer_file(tmp_path):
    with pytest.raises(ml.MultiloraFileNotFoundError) as e:
        ml.Tokenizer(tmp_path)
    assert_error(e, ml.MultiloraFileNotFoundError, "MLORA_STATUS_NOT_FOUND", "tokenizer.json")
    assert e.value.filename == str(tmp_path / "tokenizer.json")


def test_missing_model(tmp_path):
    with pytest.raises(ml.MultiloraFileNotFoundError) as e:
        ml.Model(tmp_path / "none.onnx")
    assert_error(e, ml.MultiloraFileNotFoundError, "MLORA_STATUS_NOT_FOUND", "none.onnx")
    assert isinstance(e.value, FileNotFoundError) and not isinstance(e.value, KeyError)


def test_not_a_model(tmp_path):
    path = _write(tmp_path / "junk.onnx", b"\x00\x01 this is not protobuf \xff\xfe" * 10)
    with pytest.raises(ml.MultiloraError) as e:
        ml.Model(path)
    assert e.value.status_name in ("MLORA_STATUS_FORMAT", "MLORA_STATUS_RUNTIME")
    assert "junk.onnx" in str(e.value)


def test_plain_onnx_model_cannot_generate(model):
    with pytest.raises(ml.InvalidArgumentError) as e:
        ml.GeneratorParams(model)
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "genai_config.json")
