"""Hostile inputs: crafted .onnx_adapter files (dims that overflow or are negative, offsets past the end,
huge declared sizes, unterminated or malformed strings), hostile paths (FIFOs, devices, symlinks,
embedded NUL bytes, non-UTF-8) and files changed or truncated while mapped. Each gets a named error
(class, status name, and a message naming the file and the parameter) or a documented behaviour.

test_errors.py covers the plainer cases (missing file, directory, truncation, wrong identifier,
format_version, raw_data size, unknown dtype); this file does not repeat them.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pytest

import multilora as ml
from multilora import testing as T

import support as S
from support import assert_close, assert_error

HERE = Path(__file__).resolve().parent


@pytest.fixture
def good(sql_ours: str) -> bytes:
    """A valid adapter for lora_model written by multilora (raw data 8-aligned: every payload mapped)."""
    return Path(sql_ours).read_bytes()


def _load_both_ways(adapters: ml.Adapters, tmp_path: Path, data: bytes, stem: str):
    """Loads `data` from a file and from memory; yields (excinfo, label) pairs for the caller to check."""
    path = tmp_path / f"{stem}.onnx_adapter"
    path.write_bytes(data)
    out = []
    with pytest.raises(ml.MultiloraError) as e1:
        adapters.load(path, "x")
    out.append((e1, path.name))
    with pytest.raises(ml.MultiloraError) as e2:
        adapters.load_from_memory(data, "x")
    out.append((e2, "adapter '<memory:x>'"))
    with pytest.raises(ml.MultiloraError) as e3:
        ml.read_adapter(path)
    out.append((e3, path.name))
    assert adapters.names() == []
    return out


def _patched(good: bytes, fn: Callable[[bytearray, S.ParamLayout], None]) -> bytes:
    buf = bytearray(good)
    fn(buf, S.params(buf)[0])
    return bytes(buf)


# ---- crafted files: shapes ---------------------------------------------------------------------------


def test_dims_whose_product_overflows(adapters, good, tmp_path):
    def patch(b, p):
        S.set_i64(b, p.dims_start, 1 << 62)
        S.set_i64(b, p.dims_start + 8, 1 << 20)

    name = S.params(good)[0].name
    for e, label in _load_both_ways(adapters, tmp_path, _patched(good, patch), "overflow"):
        assert_error(
            e, ml.FormatError, "MLORA_STATUS_FORMAT", label, name, "overflows", "[4611686018427387904, 1048576]"
        )


def test_dims_whose_byte_size_overflows(adapters, good, tmp_path):
    """Element count fits in 64 bits, times 4 bytes per float does not."""

    def patch(b, p):
        S.set_i64(b, p.dims_start, 1 << 31)
        S.set_i64(b, p.dims_start + 8, 1 << 31)

    name = S.params(good)[0].name
    for e, label in _load_both_ways(adapters, tmp_path, _patched(good, patch), "bytes_overflow"):
        assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", label, name, "overflows")


@pytest.mark.parametrize("dim", [-1, -(1 << 63)])
def test_negative_dim(adapters, good, tmp_path, dim):
    name = S.params(good)[0].name
    data = _patched(good, lambda b, p: S.set_i64(b, p.dims_start + 8, dim))
    for e, label in _load_both_ways(adapters, tmp_path, data, "negative"):
        assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", label, name, f"negative dimension {dim}")


def test_huge_dims_declare_more_bytes_than_the_file_has(adapters, good, tmp_path):
    p0 = S.params(good)[0]
    data = _patched(good, lambda b, p: S.set_i64(b, p.dims_start, 1 << 40))
    for e, label in _load_both_ways(adapters, tmp_path, data, "huge_dims"):
        assert_error(
            e, ml.FormatError, "MLORA_STATUS_FORMAT", label, p0.name, f"raw_data has {p0.raw_len} bytes", "expected"
        )


def test_zero_dim_beside_a_huge_one_is_an_empty_tensor_not_an_overflow(adapters, good, tmp_path):
    p0 = S.params(good)[0]

    def patch(b, p):
        S.set_i64(b, p.dims_start, 1 << 62)
        S.set_i64(b, p.dims_start + 8, 0)

    for e, label in _load_both_ways(adapters, tmp_path, _patched(good, patch), "zero_dim"):
        assert_error(
            e, ml.FormatError, "MLORA_STATUS_FORMAT", label, p0.name, f"raw_data has {p0.raw_len} bytes", "expected 0"
        )


# ---- crafted files: offsets and declared sizes ------------------------------------------------------


def _set_u32(b: bytearray, pos: int, value: int) -> None:
    struct.pack_into("<I", b, pos, value)


OFFSET_PATCHES: Dict[str, Callable[[bytearray, S.ParamLayout], None]] = {
    # offsets that point past the end of the buffer
    "root_offset_past_end": lambda b, p: _set_u32(b, 0, len(b) + 64),
    "raw_data_offset_past_end": lambda b, p: _set_u32(b, S.field_pos(b, p.table, S.PARAM_RAW), len(b)),
    "name_offset_past_end": lambda b, p: _set_u32(b, S.field_pos(b, p.table, S.PARAM_NAME), 0x7FFFFFF0),
    "vtable_offset_past_end": lambda b, p: struct.pack_into("<i", b, p.table, -0x7FFFFFF0),
    # vectors and strings declaring far more elements than the buffer holds
    "raw_data_length_huge": lambda b, p: _set_u32(b, p.raw_start - 4, 0x7FFFFFF0),
    "raw_data_length_max": lambda b, p: _set_u32(b, p.raw_start - 4, 0xFFFFFFFF),
    "dims_length_huge": lambda b, p: _set_u32(b, p.dims_start - 4, 0x40000000),
    "name_length_huge": lambda b, p: _set_u32(b, S.deref(b, S.field_pos(b, p.table, S.PARAM_NAME)), 0x7FFFFFFF),
    "parameters_length_huge": lambda b, p: _set_u32(
        b, S.deref(b, S.field_pos(b, S.root(b), S.ROOT_PARAMETERS)), 0x10000000
    ),
    # a string whose terminating NUL is overwritten
    "name_without_terminator": lambda b, p: b.__setitem__(
        S.deref(b, S.field_pos(b, p.table, S.PARAM_NAME)) + 4 + len(p.name), ord("x")
    ),
}


@pytest.mark.parametrize("case", sorted(OFFSET_PATCHES))
def test_offsets_and_sizes_that_do_not_fit_fail_verification(adapters, good, tmp_path, case):
    data = _patched(good, OFFSET_PATCHES[case])
    assert len(data) == len(good)
    for e, label in _load_both_ways(adapters, tmp_path, data, case):
        assert_error(
            e, ml.FormatError, "MLORA_STATUS_FORMAT", label, "FlatBuffers verification failed", f"{len(good)} bytes"
        )


def test_trailing_bytes_after_a_valid_buffer_are_ignored(adapters, good, tmp_path):
    """As FlatBuffers and ONNX Runtime do (a cut file is test_errors.py::test_truncated_file)."""
    path = tmp_path / "trailing.onnx_adapter"
    path.write_bytes(good + b"\x00" * 4096)
    adapters.load(path, "trailing")
    assert adapters.names() == ["trailing"]


# ---- crafted files: names ---------------------------------------------------------------------------


def _name_pos(b: bytes, p: S.ParamLayout) -> int:
    return S.deref(b, S.field_pos(b, p.table, S.PARAM_NAME)) + 4


@pytest.mark.parametrize(
    "byte,fragment",
    [
        (0x00, "name contains a NUL byte"),
        (0xFF, "name is not valid UTF-8"),
        (0xC0, "name is not valid UTF-8"),  # start of an overlong form
        (0xED, "name is not valid UTF-8"),  # start of a surrogate (with the following ASCII byte)
    ],
)
def test_malformed_parameter_names(adapters, good, tmp_path, byte, fragment):
    data = _patched(good, lambda b, p: b.__setitem__(_name_pos(b, p) + 3, byte))
    for e, label in _load_both_ways(adapters, tmp_path, data, "badname"):
        assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", label, "parameter #0", fragment)


def test_a_name_that_appears_twice_is_a_format_error_naming_both_positions(adapters, good, tmp_path):
    """Two parameters of one file with the same name (a later one overwritten with an earlier one's name of the
    same length): the file is refused, naming the name and both positions, whichever way it is loaded."""
    layout = S.params(good)
    i, j = next(
        (a, b)
        for a in range(len(layout))
        for b in range(a + 1, len(layout))
        if len(layout[a].name) == len(layout[b].name) and layout[a].name != layout[b].name
    )
    buf = bytearray(good)
    src, dst = _name_pos(good, layout[i]), _name_pos(good, layout[j])
    buf[dst : dst + len(layout[j].name)] = good[src : src + len(layout[i].name)]
    for e, label in _load_both_ways(adapters, tmp_path, bytes(buf), "dupname"):
        assert_error(
            e, ml.FormatError, "MLORA_STATUS_FORMAT", label, f"'{layout[i].name}' appears twice", f"#{i} and #{j}"
        )


def test_control_characters_in_a_name_are_escaped_in_messages(adapters, good, tmp_path):
    """A name with a control byte is valid UTF-8 (so loadable as far as the format goes) but the model has no
    such input: the message shows it escaped, on one line."""
    data = _patched(good, lambda b, p: b.__setitem__(_name_pos(b, p) + 3, 0x0A))
    path = tmp_path / "ctl.onnx_adapter"
    path.write_bytes(data)
    with pytest.raises(ml.MultiloraError) as e:
        adapters.load(path, "x")
    assert "ctl.onnx_adapter" in str(e.value)
    assert e.value.status_name in ("MLORA_STATUS_NOT_FOUND", "MLORA_STATUS_FORMAT")


# ---- hostile paths ---------------------------------------------------------------------------------


def _in_subprocess(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs Python code in a child (for what may hang or kill the process); cwd = tests/python."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=str(HERE),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_fifo_is_refused_without_blocking(tmp_path):
    """Opening a FIFO with no writer would block forever; the reader refuses it at once. In a child process
    with a timeout, so a regression fails instead of hanging the suite."""
    fifo = tmp_path / "adapter.fifo"
    os.mkfifo(fifo)
    r = _in_subprocess(
        f"""
        import multilora as ml
        try:
            ml.read_adapter({str(fifo)!r})
        except ml.MultiloraIOError as e:
            print(e.status_name, e)
        """,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert "MLORA_STATUS_IO" in r.stdout and "a FIFO" in r.stdout and str(fifo) in r.stdout


def test_fifo_via_the_registry(adapters, tmp_path):
    fifo = tmp_path / "reg.fifo"
    os.mkfifo(fifo)
    with pytest.raises(ml.MultiloraIOError) as e:
        adapters.load(fifo, "x")
    assert_error(e, ml.MultiloraIOError, "MLORA_STATUS_IO", str(fifo), "a FIFO", "not a regular file")


def test_character_device(adapters):
    with pytest.raises(ml.MultiloraIOError) as e:
        adapters.load("/dev/null", "x")
    assert_error(e, ml.MultiloraIOError, "MLORA_STATUS_IO", "/dev/null", "a character device")


def test_symlinks(adapters, good, tmp_path):
    (tmp_path / "real.onnx_adapter").write_bytes(good)
    os.symlink(tmp_path / "real.onnx_adapter", tmp_path / "link.onnx_adapter")
    adapters.load(tmp_path / "link.onnx_adapter", "via_link")  # a link to a file is that file
    os.symlink(tmp_path / "missing", tmp_path / "dangling.onnx_adapter")
    with pytest.raises(ml.MultiloraFileNotFoundError) as e:
        adapters.load(tmp_path / "dangling.onnx_adapter", "x")
    assert_error(e, ml.MultiloraFileNotFoundError, "MLORA_STATUS_NOT_FOUND", "dangling.onnx_adapter")
    os.symlink(tmp_path, tmp_path / "dirlink.onnx_adapter")
    with pytest.raises(ml.MultiloraIOError) as e:  # the file reader; Adapters.load takes folders as PEFT
        ml.read_adapter(tmp_path / "dirlink.onnx_adapter")
    assert_error(e, ml.MultiloraIOError, "MLORA_STATUS_IO", "dirlink.onnx_adapter", "a directory")
    with pytest.raises(ml.MultiloraError) as e:
        adapters.load(tmp_path / "dirlink.onnx_adapter", "x")
    assert "dirlink.onnx_adapter" in str(e.value)
    with pytest.raises(ml.MultiloraError) as e:
        adapters.load(tmp_path / "real.onnx_adapter" / "below", "x")  # a file used as a folder
    assert e.value.status_name in ("MLORA_STATUS_NOT_FOUND", "MLORA_STATUS_IO")
    assert adapters.names() == ["via_link"]


def test_embedded_nul_in_a_path_is_refused_not_truncated(adapters, good, tmp_path):
    """C strings end at the first NUL: 'dir/a\\0b' must not silently become 'dir/a' (another file)."""
    (tmp_path / "a").write_bytes(good)
    bad = str(tmp_path / "a") + "\0.onnx_adapter"
    with pytest.raises(ml.InvalidArgumentError) as e:
        adapters.load(bad, "x")
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "path", str(tmp_path / "a"), "NUL")
    with pytest.raises(ml.InvalidArgumentError):
        ml.read_adapter(bad)
    with pytest.raises(ml.InvalidArgumentError):
        ml.Model(bad)
    with pytest.raises(ml.InvalidArgumentError):
        ml.write_adapter(bad, {"w": np.zeros((1, 1), np.float32)})
    assert adapters.names() == []


def test_embedded_nul_in_names_is_refused_not_truncated(adapters, sql_ours):
    with pytest.raises(ml.InvalidArgumentError) as e:
        adapters.load(sql_ours, "sql\0evil")
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "adapter name", "'sql", "NUL")
    assert adapters.names() == []
    adapters.load(sql_ours, "sql")
    for call in (
        lambda: adapters.unload("sql\0"),
        lambda: adapters.get("sql\0x"),
        lambda: ml.RunOptions().set_active_adapters(adapters, ["sql\0"]),
    ):
        with pytest.raises(ml.InvalidArgumentError) as e:
            call()
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "NUL")
    assert adapters.names() == ["sql"]


def test_path_that_is_not_utf8(adapters):
    bad = "adapter-\udcff.onnx_adapter"  # a surrogate-escaped byte: no UTF-8 spelling
    with pytest.raises(ml.InvalidArgumentError) as e:
        adapters.load(bad, "x")
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "path", "UTF-8")


def test_model_folder_with_hostile_genai_config(tmp_path, lora_model):
    """genai_config.json that is a FIFO (would block), a directory or empty: named errors, no hang."""
    fifo_dir = tmp_path / "fifo_model"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "genai_config.json")
    dir_dir = tmp_path / "dir_model"
    (dir_dir / "genai_config.json").mkdir(parents=True)
    empty_dir = tmp_path / "empty_model"
    empty_dir.mkdir()
    (empty_dir / "genai_config.json").write_bytes(b"")
    r = _in_subprocess(
        f"""
        import multilora as ml
        for d in ({str(fifo_dir)!r}, {str(dir_dir)!r}, {str(empty_dir)!r}):
            try:
                ml.Model(d)
            except ml.MultiloraError as e:
                print(e.status_name, str(e).replace("\\n", " "))
        """,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3, r.stdout
    assert lines[0].startswith("MLORA_STATUS_IO") and "a FIFO" in lines[0] and "genai_config.json" in lines[0]
    assert lines[1].startswith("MLORA_STATUS_IO") and "a directory" in lines[1]
    assert lines[2].startswith("MLORA_STATUS_FORMAT") and "genai_config.json" in lines[2]


# ---- files changed while mapped ---------------------------------------------------------------------


def _run(model: ml.Model, ids: np.ndarray, adapters: ml.Adapters, name: str) -> np.ndarray:
    opts = ml.RunOptions()
    opts.set_active_adapters(adapters, [name])
    return model.run(["logits"], {"input_ids": ids}, opts)[0]


def test_replaced_by_rename_while_loaded_keeps_the_old_contents(model, adapters, lora_model, ids, params_sql, tmp_path):
    """write_adapter (and any atomic writer: temp file + rename) gives the path a new inode; the mapping
    keeps the old one, so a loaded adapter is unaffected until it is loaded again."""
    path = tmp_path / "swap.onnx_adapter"
    ml.write_adapter(path, params_sql)
    adapters.load(path, "swap")
    other = T.make_adapter_params(lora_model, rank=2, seed=99)
    ml.write_adapter(path, other)
    assert_close(
        _run(model, ids, adapters, "swap"), T.reference_forward(lora_model, ids, [(params_sql, 1.0)]), 1e-4, 1e-4
    )
    adapters.load(path, "swap", replace=True)
    assert_close(_run(model, ids, adapters, "swap"), T.reference_forward(lora_model, ids, [(other, 1.0)]), 1e-4, 1e-4)


def test_overwritten_in_place_while_loaded_shows_new_payload_but_never_crashes(
    model, adapters, lora_model, ids, tmp_path
):
    """Writing into the same inode (same size) changes the mapped pages: the payload the next run reads is
    the new one (names, dims and dtypes were copied at load, so the structure cannot change under us).
    Garbage over the whole file likewise gives finite-or-not numbers, not a crash."""
    params_a = T.make_adapter_params(lora_model, rank=4, seed=21)
    params_b = T.make_adapter_params(lora_model, rank=4, seed=22)
    path = tmp_path / "inplace.onnx_adapter"
    ml.write_adapter(path, params_a)
    adapters.load(path, "inplace")
    ref_a = T.reference_forward(lora_model, ids, [(params_a, 1.0)])
    assert_close(_run(model, ids, adapters, "inplace"), ref_a, 1e-4, 1e-4)
    tmp_b = tmp_path / "b.onnx_adapter"
    ml.write_adapter(tmp_b, params_b)
    data_b = tmp_b.read_bytes()
    assert len(data_b) == path.stat().st_size
    with open(path, "r+b") as f:  # same inode, same size
        f.write(data_b)
    got = _run(model, ids, adapters, "inplace")
    ref_b = T.reference_forward(lora_model, ids, [(params_b, 1.0)])
    assert np.allclose(got, ref_b, 1e-4, 1e-4) or np.allclose(got, ref_a, 1e-4, 1e-4)
    with open(path, "r+b") as f:
        f.write(np.random.default_rng(0).integers(0, 256, len(data_b), dtype=np.uint8).tobytes())
    got = _run(model, ids, adapters, "inplace")
    assert got.shape == ref_a.shape


TRUNCATE_CHILD = """
import os, sys
import numpy as np
import multilora as ml
from multilora import testing as T
model_info = T.make_lora_model({model!r}, layers=1, hidden=16, modules=("q_proj",), seed=0)
model = ml.Model(model_info.path)
adapters = ml.Adapters(model)
path = {adapter!r}
ml.write_adapter(path, T.make_adapter_params(model_info, rank=4, seed=1))
if {from_memory}:
    with open(path, "rb") as f:
        adapters.load_from_memory(f.read(), "a")
else:
    adapters.load(path, "a")
opts = ml.RunOptions()
opts.set_active_adapters(adapters, ["a"])
os.truncate(path, 0)
sys.stdout.write("truncated\\n"); sys.stdout.flush()
model.run(["logits"], {{"input_ids": T.make_input_ids(model_info)}}, opts)
print("ran")
"""


def test_truncated_while_mapped_raises_sigbus(tmp_path):
    """The documented limit of mapping: a file truncated under a loaded adapter makes the next read of its
    payload raise SIGBUS (the process dies; as with any mmap reader, e.g. ONNX Runtime's own). Files must
    be replaced by rename, never truncated in place. Tested in a child process."""
    code = TRUNCATE_CHILD.format(
        model=str(tmp_path / "m.onnx"), adapter=str(tmp_path / "t.onnx_adapter"), from_memory=False
    )
    r = _in_subprocess(code, timeout=120)
    assert "truncated" in r.stdout, r.stderr
    # (under scripts/sanitize.sh AddressSanitizer reports the SIGBUS itself and exits non-zero)
    asan_bus = "AddressSanitizer" in r.stderr and "BUS" in r.stderr and r.returncode != 0
    assert r.returncode == -signal.SIGBUS or asan_bus, (r.returncode, r.stdout, r.stderr[-2000:])


def test_truncation_cannot_hurt_an_adapter_loaded_from_memory(tmp_path):
    """load_from_memory copies the bytes: the way to be immune to files changing under a server."""
    code = TRUNCATE_CHILD.format(
        model=str(tmp_path / "m.onnx"), adapter=str(tmp_path / "t.onnx_adapter"), from_memory=True
    )
    r = _in_subprocess(code, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr[-2000:])
    assert "ran" in r.stdout
