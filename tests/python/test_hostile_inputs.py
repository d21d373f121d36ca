"""Hostile inputs, second pass (issue 11): deeply nested JSON, special files named like configs, bytes that are
not UTF-8 in messages, token ids that would wrap, sizes that lie, huge weights and scales, model folders that
point outside themselves, and files truncated under a copy-loaded adapter. Each gets a named error (or, for
the copy flag, the right output) — never a crash, a hang or a wrong answer.

What may crash or hang runs in a child process with a timeout, so a regression fails instead of killing
or hanging the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import multilora as ml
from multilora import peft as peft_mod
from multilora import testing as T

from support import assert_close, assert_error

HERE = Path(__file__).resolve().parent
FX = HERE / "fixtures"
PEFT_QV = FX / "peft" / "tiny_qv"
GEN_BASE = FX / "generation" / "base"
DEPTH = 150_000  # ~300 KB of brackets: deep enough to overflow an 8 MB stack in a recursive walk


def _child(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=str(HERE), capture_output=True, text=True, timeout=timeout
    )


def _errors_in_child(body: str, timeout: float = 120) -> list:
    """Runs `body` (which calls record(fn)) in a child; returns [(status_name, message)] per call."""
    code = (
        textwrap.dedent(
            """
        import json, sys
        import multilora as ml
        out = []
        def record(fn):
            try:
                fn()
                out.append(["OK", ""])
            except ml.MultiloraError as e:
                out.append([e.status_name, str(e)])
        """
        )
        + textwrap.dedent(body)
        + "\nprint(json.dumps(out))\n"
    )
    r = _child(code, timeout)
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny Llama the PEFT fixtures were trained for (as test_peft.py builds it)."""
    path = tmp_path_factory.mktemp("hostile_tiny") / "tiny.onnx"
    return T.make_lora_model(
        path,
        layers=2,
        hidden=16,
        intermediate=32,
        modules=("q_proj", "v_proj", "up_proj", "down_proj"),
        seed=5,
        rank_dim="r_{layer}_{module}",
    )


def _peft_copy(tmp_path: Path, name: str = "peft") -> Path:
    dst = tmp_path / name
    shutil.copytree(PEFT_QV, dst)
    return dst


def _genai_copy(tmp_path: Path, name: str = "gen") -> Path:
    dst = tmp_path / name
    shutil.copytree(GEN_BASE, dst)
    return dst


def _write_safetensors_raw(path: Path, header: bytes, data: bytes = b"") -> None:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


# ---- (2) deeply nested JSON ----------------------------------------------------------------------------


def _deep_configs(tmp_path: Path):
    """Configs whose deep value sits where the readers copy or print it (an error message quoting it)."""
    deep = "[" * DEPTH + "]" * DEPTH
    gen = _genai_copy(tmp_path)
    text = (GEN_BASE / "genai_config.json").read_text()
    cfg = json.loads(text)
    cfg["model"]["decoder"]["session_options"]["graph_optimization_level"] = "@DEEP@"
    (gen / "genai_config.json").write_text(json.dumps(cfg).replace('"@DEEP@"', deep))
    peft = _peft_copy(tmp_path)
    pcfg = json.loads((PEFT_QV / "adapter_config.json").read_text())
    pcfg["modules_to_save"] = "@DEEP@"
    (peft / "adapter_config.json").write_text(json.dumps(pcfg).replace('"@DEEP@"', deep))
    st = _peft_copy(tmp_path, "peft_st")
    header = '{"x.lora_A.weight": {"dtype": "F32", "shape": ' + deep + ', "data_offsets": [0, 0]}}'
    _write_safetensors_raw(st / "adapter_model.safetensors", header.encode())
    return gen, peft, st


def test_deeply_nested_json_is_a_format_error_naming_the_file(tiny, tmp_path):
    """~300 KB of nested '[' in genai_config.json, adapter_config.json and a safetensors header, where the
    reader prints the value in a message: FORMAT naming the file (before: SIGSEGV, stack overflow in the
    recursive print/copy of the parsed value)."""
    gen, peft, st = _deep_configs(tmp_path)
    got = _errors_in_child(
        f"""
        m = ml.Model({tiny.path!r})
        reg = ml.Adapters(m)
        record(lambda: ml.Model({str(gen)!r}))
        record(lambda: reg.load({str(peft)!r}, "p"))
        record(lambda: reg.load({str(st)!r}, "s"))
        """
    )
    assert got[0][0] == "MLORA_STATUS_FORMAT" and "genai_config.json" in got[0][1] and "deeper than" in got[0][1]
    assert got[1][0] == "MLORA_STATUS_FORMAT" and "adapter_config.json" in got[1][1] and "deeper than" in got[1][1]
    assert got[2][0] == "MLORA_STATUS_FORMAT" and "adapter_model.safetensors" in got[2][1]
    assert "deeper than" in got[2][1]


def test_cli_check_convert_and_inspect_survive_deep_json(tiny, tmp_path):
    _, peft, _ = _deep_configs(tmp_path)
    for args in (
        ["check", "--model", tiny.path, str(peft)],
        ["convert", str(peft), "-o", str(tmp_path / "out.onnx_adapter"), "--model", tiny.path],
        ["inspect", str(peft)],
    ):
        r = subprocess.run(
            [sys.executable, "-m", "multilora.cli", *args], capture_output=True, text=True, timeout=120, cwd=str(HERE)
        )
        assert r.returncode == 1, (args, r.returncode, r.stderr[-2000:])
        assert "Traceback" not in r.stderr, r.stderr[-2000:]
        assert "adapter_config.json" in r.stdout + r.stderr, (r.stdout[-2000:], r.stderr[-2000:])


def test_json_nested_just_below_the_limit_still_parses(tiny, tmp_path):
    """The depth cap (256) leaves ordinary nesting alone: a 200-deep list in an ignored key loads."""
    peft = _peft_copy(tmp_path)
    cfg = json.loads((PEFT_QV / "adapter_config.json").read_text())
    cfg["x_deep_but_fine"] = json.loads("[" * 200 + "]" * 200)
    (peft / "adapter_config.json").write_text(json.dumps(cfg))
    with ml.Model(tiny.path) as m, ml.Adapters(m) as reg:
        reg.load(peft, "p")
        assert reg.names() == ["p"]


# ---- (3) every file is checked before it is read -------------------------------------------------------


def test_adapter_config_that_is_a_fifo_device_or_directory(tiny, tmp_path):
    fifo = _peft_copy(tmp_path, "fifo")
    (fifo / "adapter_config.json").unlink()
    os.mkfifo(fifo / "adapter_config.json")
    zero = _peft_copy(tmp_path, "zero")
    (zero / "adapter_config.json").unlink()
    (zero / "adapter_config.json").symlink_to("/dev/zero")
    folder = _peft_copy(tmp_path, "dir")
    (folder / "adapter_config.json").unlink()
    (folder / "adapter_config.json").mkdir()
    big = _peft_copy(tmp_path, "big")
    with open(big / "adapter_config.json", "r+b") as f:
        f.truncate(17 << 20)  # sparse: over the 16 MiB config limit
    got = _errors_in_child(
        f"""
        m = ml.Model({tiny.path!r})
        reg = ml.Adapters(m)
        for d in ({str(fifo)!r}, {str(zero)!r}, {str(folder)!r}, {str(big)!r}):
            record(lambda: reg.load(d, "x"))
        """,
        timeout=60,
    )
    for (status, message), kind in zip(got, ("a FIFO", "a character device", "a directory", "limit")):
        assert status == "MLORA_STATUS_IO", (status, message)
        assert "adapter_config.json" in message and kind in message, message
        assert "unexpected end of input" not in message


def test_genai_config_symlinked_to_dev_zero_or_too_big(tmp_path):
    zero = _genai_copy(tmp_path, "zero")
    (zero / "genai_config.json").unlink()
    (zero / "genai_config.json").symlink_to("/dev/zero")
    big = _genai_copy(tmp_path, "big")
    with open(big / "genai_config.json", "r+b") as f:
        f.truncate(17 << 20)
    got = _errors_in_child(
        f"""
        for d in ({str(zero)!r}, {str(big)!r}):
            record(lambda: ml.Model(d))
        """,
        timeout=60,
    )
    assert got[0][0] == "MLORA_STATUS_IO" and "a character device" in got[0][1], got
    assert got[1][0] == "MLORA_STATUS_IO" and "limit" in got[1][1], got


# ---- (4) messages are UTF-8 ------------------------------------------------------------------------------


def test_invalid_utf8_in_config_files_gives_a_format_error_with_escaped_bytes(tiny, tmp_path):
    peft = _peft_copy(tmp_path)
    raw = (PEFT_QV / "adapter_config.json").read_bytes()
    (peft / "adapter_config.json").write_bytes(raw.replace(b'"LORA"', b'"LO\xffRA"', 1))
    gen = _genai_copy(tmp_path)
    graw = (GEN_BASE / "genai_config.json").read_bytes()
    (gen / "genai_config.json").write_bytes(graw.replace(b'"llama"', b'"ll\xffama"', 1))
    with ml.Model(tiny.path) as m, ml.Adapters(m) as reg:
        with pytest.raises(ml.FormatError) as e:
            reg.load(peft, "p")
        assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "adapter_config.json", "\\xff")
    with pytest.raises(ml.FormatError) as e:
        ml.Model(gen)
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "genai_config.json", "\\xff")


def test_the_binding_decodes_any_message_tolerantly():
    """Whatever bytes a message holds, Python gets the named exception (before: UnicodeDecodeError)."""
    with pytest.raises(ml.FormatError) as e:
        ml._core.raise_status(7, b"node '\xff\xfe' is bad")  # type: ignore[arg-type]
    assert "\\xff\\xfe" in str(e.value)


def test_onnx_runtime_message_quoting_a_mangled_node_name_is_utf8(tmp_path):
    """ONNX Runtime quotes node names from the model file, which need not be UTF-8 (protobuf does not check
    proto2 strings): the C message itself is valid UTF-8 with the bytes as \\xNN, not only the Python text."""
    import ctypes

    from onnx import TensorProto, helper

    node = helper.make_node("Add", ["x", "i"], ["y"], name="BADNODEX")  # float + int64: a type error at load
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("i", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    raw = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    path = tmp_path / "mangled.onnx"
    path.write_bytes(raw.replace(b"BADNODEX", b"BAD\xff\xfeDEX"))
    lib = ctypes.CDLL(ml._core.__file__)
    lib.mlora_last_error_message.restype = ctypes.c_char_p
    out = ctypes.c_void_p()
    status = lib.mlora_model_create(str(path).encode(), None, ctypes.byref(out))
    message = lib.mlora_last_error_message().decode("utf-8")  # strict: raises on any invalid byte
    assert status == 12 and "BAD\\xff\\xfeDEX" in message, message
    with pytest.raises(ml.OnnxRuntimeError) as e:
        ml.Model(path)
    assert "BAD\\xff\\xfeDEX" in str(e.value)


def test_control_characters_in_names_are_escaped_in_not_found_and_peft_messages(model, adapters, tmp_path, tiny):
    """Names from files are escaped (\\x01) in NOT_FOUND (not a LoRA input of the model) and PEFT messages."""
    path = tmp_path / "ctl.onnx_adapter"
    ml.write_adapter(path, {"bogus\x01\tname.lora_A": np.zeros((16, 2), np.float32)})
    with pytest.raises(ml.NotFoundError) as e:
        adapters.load(path, "x")
    msg = str(e.value.args[0] if e.value.args else e.value)
    assert "bogus\\x01\\x09name" in msg and "\x01" not in msg and "\t" not in msg
    # PEFT: a tensor whose name carries a control character matches nothing: NOT_FOUND listing it, escaped.
    peft = _peft_copy(tmp_path)
    tensors = peft_mod.read_safetensors(PEFT_QV / "adapter_model.safetensors")
    name = next(iter(tensors))
    tensors["base_model.model.model.layers.0.odd\x02module.lora_A.weight"] = tensors[name]
    peft_mod.write_safetensors(peft / "adapter_model.safetensors", tensors)
    with ml.Model(tiny.path) as m, ml.Adapters(m) as reg:
        with pytest.raises(ml.MultiloraError) as e2:
            reg.load(peft, "p")
        text = str(e2.value)
        assert "odd\\x02module" in text and "\x02" not in text


# ---- (5) token ids do not wrap ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gen_model():
    with ml.Model(str(GEN_BASE)) as m:
        yield m


def _generator(model):
    params = ml.GeneratorParams(model)
    params.set_search_options(max_length=32)
    return params, ml.Generator(model, params)


@pytest.mark.parametrize(
    "tokens, big",
    [
        (np.array([1, 2, 2**40 + 7]), "1099511627783"),
        ([1, 2, 2**40 + 7], "1099511627783"),
        (np.array([5, -(2**40)]), str(-(2**40))),
        (np.array([[1, 2], [3, 2**33]]), str(2**33)),
        (np.array([1, 2**64 - 1], dtype=np.uint64), str(2**64 - 1)),
        ([1, 2**70], str(2**70)),
        ([1, -(2**90)], str(-(2**90))),
    ],
)
def test_token_ids_outside_int32_are_refused_naming_the_id_and_the_vocabulary(gen_model, tokens, big):
    params, gen = _generator(gen_model)
    two_d = np.asarray(tokens).ndim == 2
    if two_d:
        params = ml.GeneratorParams(gen_model)
        params.set_search_options(max_length=32, batch_size=2)
        gen = ml.Generator(gen_model, params)
    with pytest.raises(ml.InvalidArgumentError) as e:
        gen.append_tokens(tokens)
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", big, "vocabulary", "0..95")
    gen.append_tokens(np.array([[4], [5]]) if two_d else np.array([4]))  # nothing was appended before
    assert gen.get_sequence(0).tolist() == [4]


@pytest.mark.parametrize(
    "tokens", [np.array([1.9, 2.7]), [1.9, 2.7], np.array([True, False]), [[1.0, 2.0]], [1, 2**70, 0.5], ["1", "2"]]
)
def test_non_integer_token_arrays_are_refused(gen_model, tokens):
    params, gen = _generator(gen_model)
    with pytest.raises(ml.TypeMismatchError) as e:
        gen.append_tokens(tokens)
    assert_error(e, ml.TypeMismatchError, "MLORA_STATUS_TYPE_MISMATCH", "integers")


def test_append_token_sequences_checks_every_sequence(gen_model):
    params = ml.GeneratorParams(gen_model)
    params.set_search_options(max_length=32, batch_size=2)
    gen = ml.Generator(gen_model, params)
    with pytest.raises(ml.TypeMismatchError):
        gen.append_token_sequences([[1, 2], [3.5]])
    with pytest.raises(ml.InvalidArgumentError) as e:
        gen.append_token_sequences([[1, 2], [3, 2**40]])
    assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", str(2**40), "vocabulary")
    gen.append_token_sequences([[1, 2], [3]])  # valid ids still work
    assert gen.get_sequence(1).tolist()[-1] == 3


def test_in_range_ids_of_any_integer_dtype_are_accepted(gen_model):
    for dt in (np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint32, np.uint64):
        params, gen = _generator(gen_model)
        gen.append_tokens(np.array([4, 5, 6], dtype=dt))
        assert gen.get_sequence(0).tolist() == [4, 5, 6]


# ---- (6) sizes that lie -----------------------------------------------------------------------------------

LYING_SIZE_CHILD = """
import ctypes, sys
import multilora as ml
from multilora import testing as T
lib = ctypes.CDLL(ml._core.__file__)  # the extension links the library; its symbols resolve through it
for name in ("mlora_adapter_open_from_memory", "mlora_adapters_load_from_memory", "mlora_last_error_message",
             "mlora_adapters_create", "mlora_model_create", "mlora_status_name"):
    getattr(lib, name)
lib.mlora_last_error_message.restype = ctypes.c_char_p
lib.mlora_status_name.restype = ctypes.c_char_p
data = open({adapter!r}, "rb").read()
buf = ctypes.create_string_buffer(data, len(data))
model = ctypes.c_void_p()
assert lib.mlora_model_create({model!r}.encode(), None, ctypes.byref(model)) == 0, lib.mlora_last_error_message()
reg = ctypes.c_void_p()
assert lib.mlora_adapters_create(model, ctypes.byref(reg)) == 0
for size in (2**64 - 1, 3 << 30, 2**63):
    out = ctypes.c_void_p()
    s = lib.mlora_adapter_open_from_memory(buf, ctypes.c_size_t(size), ctypes.byref(out))
    print(lib.mlora_status_name(s).decode(), lib.mlora_last_error_message().decode(), out.value is None)
    s = lib.mlora_adapters_load_from_memory(reg, buf, ctypes.c_size_t(size), b"x", 0)
    print(lib.mlora_status_name(s).decode(), lib.mlora_last_error_message().decode())
"""


def test_load_from_memory_with_a_size_that_lies(tmp_path, lora_model, sql_ours):
    """A small real buffer with SIZE_MAX / 3 GiB / 2^63 as its size: FORMAT before any copy (before: the copy
    came first; 'double free or corruption' or SIGSEGV)."""
    r = _child(LYING_SIZE_CHILD.format(adapter=sql_ours, model=lora_model.path), timeout=120)
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 6, r.stdout
    for line in lines:
        assert line.startswith("MLORA_STATUS_FORMAT") and "2 GiB" in line, line


# ---- smaller items ------------------------------------------------------------------------------------------


def test_read_adapter_with_more_dims_than_numpy_supports(tmp_path):
    """The format allows any number of dims; numpy does not: a named error instead of numpy's ValueError."""
    path = tmp_path / "dims.onnx_adapter"
    code = f"""
    import ctypes
    import multilora as ml
    lib = ctypes.CDLL(ml._core.__file__)
    dims = (ctypes.c_int64 * 65)(*([1] * 65))
    data = (ctypes.c_float * 1)(1.5)
    t = ctypes.c_void_p()
    assert lib.mlora_tensor_create(1, dims, ctypes.c_size_t(65), data, ctypes.c_size_t(4), ctypes.byref(t)) == 0
    names = (ctypes.c_char_p * 1)(b"p.lora_A")
    tensors = (ctypes.c_void_p * 1)(t.value)
    assert lib.mlora_adapter_write({str(path).encode()!r}, names, tensors, ctypes.c_size_t(1), 0, 0) == 0
    """
    r = _child(code)
    assert r.returncode == 0, r.stderr[-2000:]
    with pytest.raises(ml.ShapeMismatchError) as e:
        ml.read_adapter(path)
    assert_error(e, ml.ShapeMismatchError, "MLORA_STATUS_SHAPE_MISMATCH", "p.lora_A", "65 dims")


def test_lone_surrogate_in_an_adapter_name(adapters, sql_ours):
    for call in (
        lambda: adapters.load(sql_ours, "a\udcff"),
        lambda: adapters.load_from_memory(Path(sql_ours).read_bytes(), "a\udcff"),
        lambda: adapters.unload("a\udcff"),
        lambda: ml.RunOptions().set_active_adapters(adapters, ["a\udcff"]),
        lambda: ml.RunOptions().set_active_adapters_per_row(adapters, [["a\udcff"]]),
    ):
        with pytest.raises(ml.InvalidArgumentError) as e:
            call()
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "UTF-8")


def _with_filename(tmp_path: Path, name: str, filename: str) -> Path:
    gen = _genai_copy(tmp_path, name)
    cfg = json.loads((GEN_BASE / "genai_config.json").read_text())
    cfg["model"]["decoder"]["filename"] = filename
    (gen / "genai_config.json").write_text(json.dumps(cfg))
    return gen


def test_genai_filename_with_an_embedded_nul_is_refused(tmp_path):
    gen = _with_filename(tmp_path, "nul", "model.onnx\x00.evil")
    with pytest.raises(ml.FormatError) as e:
        ml.Model(gen)
    assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "genai_config.json", "NUL", "\\x00")


def test_genai_filename_outside_the_folder_needs_the_option(tmp_path):
    outside = _genai_copy(tmp_path, "real")
    climb = _with_filename(tmp_path, "climb", "../real/model.onnx")
    absolute = _with_filename(tmp_path, "abs", str(outside / "model.onnx"))
    for folder, words in ((climb, ("'../real/model.onnx'", "..")), (absolute, ("absolute",))):
        with pytest.raises(ml.FormatError) as e:
            ml.Model(folder)
        assert_error(e, ml.FormatError, "MLORA_STATUS_FORMAT", "model.decoder.filename", *words)
        with ml.Model(folder, allow_external_paths=True) as m:  # the opt-in loads the same decoder
            assert "input_ids" in m.input_names
    inside = _with_filename(tmp_path, "inside", "./sub/../model.onnx")
    with pytest.raises(ml.FormatError):
        ml.Model(inside)  # any '..' component is refused, even one that stays inside


def test_weights_beyond_the_documented_bound_are_refused(
    model, adapters, sql_ours, chat_ours, ids, lora_model, params_sql
):
    """3.4e38 or 2^70 gave all-NaN logits without a word; |weight| > 1e6 is refused naming the adapter."""
    adapters.load(sql_ours, "sql")
    adapters.load(chat_ours, "chat")
    opts = ml.RunOptions()
    for weights, who in (([3.4e38, 1.0], "sql"), ([1.0, -(2.0**70)], "chat"), ([1.0, 1.0e6 * 1.01], "chat")):
        with pytest.raises(ml.InvalidArgumentError) as e:
            opts.set_active_adapters(adapters, ["sql", "chat"], weights)
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", f"adapter '{who}'", "1e6")
    # Inside the bound the mix is the caller's choice, and exact.
    opts.set_active_adapters(adapters, ["sql"], [1000.0])
    out = model.run(["logits"], {"input_ids": ids}, opts)[0]
    assert np.isfinite(out).all()
    assert_close(out, T.reference_forward(lora_model, ids, [(params_sql, 1000.0)]), 1e-3, 1e-2)


def test_a_weight_that_overflows_the_lora_dtype_is_refused(tmp_path):
    """float16 LoRA inputs: 1e5 x B overflows 65504 — refused naming adapter and parameter, not inf/NaN."""
    info = T.make_lora_model(tmp_path / "h.onnx", layers=1, modules=("q_proj",), dtype=np.float16, seed=3)
    params = T.make_adapter_params(info, rank=2, seed=4)
    params = {k: (np.full_like(v, 2.0) if "lora_B" in k else v) for k, v in params.items()}
    ml.write_adapter(tmp_path / "h.onnx_adapter", params)
    with ml.Model(info.path) as m, ml.Adapters(m) as reg:
        reg.load(tmp_path / "h.onnx_adapter", "half")
        with pytest.raises(ml.InvalidArgumentError) as e:
            ml.RunOptions().set_active_adapters(reg, ["half"], [1.0e5])
        assert_error(e, ml.InvalidArgumentError, "MLORA_STATUS_INVALID_ARGUMENT", "adapter 'half'", "lora_B")
        assert "overflows float16" in str(e.value)


def test_lora_alpha_that_overflows_is_refused(tiny, tmp_path):
    peft = _peft_copy(tmp_path)
    cfg = json.loads((PEFT_QV / "adapter_config.json").read_text())
    cfg["lora_alpha"] = 1e308
    (peft / "adapter_config.json").write_text(json.dumps(cfg))
    with ml.Model(tiny.path) as m, ml.Adapters(m) as reg:
        with pytest.raises(ml.FormatError) as e:
            reg.load(peft, "p")
        assert_error(
            e, ml.FormatError, "MLORA_STATUS_FORMAT", "adapter_config.json", "lora_alpha", "lora_B", "overflows"
        )


# ---- MLORA_LOAD_COPY: immune to truncation -----------------------------------------------------------------

COPY_CHILD = """
import os
import numpy as np
import multilora as ml
from multilora import testing as T
info = T.make_lora_model({model!r}, layers=1, hidden=16, modules=("q_proj",), seed=0)
params = T.make_adapter_params(info, rank=4, seed=1)
path = {adapter!r}
ml.write_adapter(path, params)
model = ml.Model(info.path)
adapters = ml.Adapters(model)
adapters.load(path, "a", copy=True)
info_a = adapters.get("a")
mapped, copied = info_a.bytes_mapped, info_a.bytes_copied
assert mapped == 0 and copied == os.path.getsize(path), (mapped, copied)
opts = ml.RunOptions()
opts.set_active_adapters(adapters, ["a"])
ids = T.make_input_ids(info)
before = model.run(["logits"], {{"input_ids": ids}}, opts)[0]
os.truncate(path, 0)
after = model.run(["logits"], {{"input_ids": ids}}, opts)[0]
ref = T.reference_forward(info, ids, [(params, 1.0)])
assert np.array_equal(before, after)
assert np.allclose(after, ref, rtol=1e-4, atol=1e-4), np.abs(after - ref).max()
print("ran")
"""


def test_load_with_copy_survives_truncation(tmp_path):
    """The documented SIGBUS of a truncated mapping (test_hostile.py) does not apply to copy=True loads."""
    r = _child(COPY_CHILD.format(model=str(tmp_path / "m.onnx"), adapter=str(tmp_path / "c.onnx_adapter")))
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    assert "ran" in r.stdout


def test_copy_flag_is_accepted_everywhere(model, adapters, sql_ours, tmp_path):
    adapters.load(sql_ours, "a", copy=True)
    assert adapters.get("a").bytes_mapped == 0
    adapters.load(sql_ours, "a", copy=True, replace=True)
    adapters.load_from_memory(Path(sql_ours).read_bytes(), "b")
    fifo = tmp_path / "f.onnx_adapter"
    os.mkfifo(fifo)
    with pytest.raises(ml.MultiloraIOError) as e:
        adapters.load(fifo, "c", copy=True)  # the same file checks as a mapped load, no hang
    assert "a FIFO" in str(e.value)
