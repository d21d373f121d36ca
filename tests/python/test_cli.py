"""`multilora inspect FILE [--json]` for adapters and models; `multilora prepare-batching`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from multilora import cli


def test_inspect_adapter_text(sql_ort, params_sql, capsys):
    assert cli.main(["inspect", sql_ort]) == 0
    out = capsys.readouterr().out
    assert f"adapter   {sql_ort}" in out
    assert f"size      {os.path.getsize(sql_ort)} bytes" in out
    assert "versions  format 1, adapter 3, model 0" in out
    assert "rank      4" in out
    assert f"params    {len(params_sql)} ({sum(v.nbytes for v in params_sql.values())} bytes of data)" in out
    for name in params_sql:
        line = next(ln for ln in out.splitlines() if ln.startswith(name))
        shape = ["[16,", "4]"] if "lora_A" in name else ["[4,", "16]"]
        assert line.split()[1:] == ["float32", *shape, "256"]


def test_inspect_adapter_json(sql_ours, params_sql, capsys):
    assert cli.main(["inspect", "--json", sql_ours]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "adapter"
    assert info["rank"] == 4 and info["adapter_version"] == 3 and info["format_version"] == 1
    assert info["file_bytes"] == info["bytes_mapped"] == os.path.getsize(sql_ours)
    assert {p["name"]: (p["dtype"], tuple(p["shape"])) for p in info["parameters"]} == {
        k: ("float32", v.shape) for k, v in params_sql.items()
    }


def test_inspect_model_text(lora_model, capsys):
    assert cli.main(["inspect", lora_model.path]) == 0
    out = capsys.readouterr().out
    assert "input_ids  int64  [?, ?]" in out
    assert "logits  float32  [?, ?, 32]" in out
    assert "LoRA inputs (8; r = the rank axis)" in out
    assert "model.layers.0.attn.q_proj.lora_A.MatMul.weight  A     float32  [16, r]  1" in out
    assert "model.layers.1.attn.v_proj.lora_B.MatMul.weight  B     float32  [r, 16]  0" in out


def test_inspect_model_json(lora_model, capsys):
    assert cli.main(["inspect", lora_model.path, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "model"
    assert info["inputs"] == [{"name": "input_ids", "dtype": "int64", "shape": [None, None]}]
    assert [lo["name"] for lo in info["lora_inputs"]] == lora_model.lora_names
    assert info["lora_inputs"][0] == {
        "name": lora_model.lora_names[0],
        "kind": "A",
        "dtype": "float32",
        "shape": [16, None],
        "rank_axis": 1,
        "features": 16,
    }


def test_inspect_missing_file(tmp_path, capsys):
    assert cli.main(["inspect", str(tmp_path / "nope.onnx_adapter")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_inspect_bad_file_reports_status(tmp_path, capsys):
    bad = tmp_path / "bad.onnx_adapter"
    bad.write_bytes(b"\x0c\x00\x00\x00TORT" + b"\x00" * 4)
    assert cli.main(["inspect", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "MLORA_STATUS_FORMAT" in err and "bad.onnx_adapter" in err


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "inspect" in capsys.readouterr().err


def test_version(capsys):
    import multilora

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == multilora.__version__


def test_module_entry_point(sql_ours):
    proc = subprocess.run(
        [sys.executable, "-m", "multilora.cli", "inspect", "--json", sql_ours],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(proc.stdout)["rank"] == 4


@pytest.mark.skipif(shutil.which("multilora") is None, reason="the console script is not installed")
def test_console_script(sql_ours):
    proc = subprocess.run(["multilora", "inspect", sql_ours], capture_output=True, text=True, check=True)
    assert "rank      4" in proc.stdout


# ---- prepare-batching -------------------------------------------------------------------------------------


def _batching_kernel(path) -> str:
    import onnx

    m = onnx.load(str(path))
    return {p.key: p.value for p in m.metadata_props}["multilora.batching_kernel"]


@pytest.mark.parametrize(
    "args,kernel", [([], "fused"), (["--kernel", "fused"], "fused"), (["--kernel", "gather"], "gather")]
)
def test_prepare_batching(lora_model, tmp_path, capsys, args, kernel):
    import onnx

    import multilora as ml

    out = tmp_path / "prepared.onnx"
    assert cli.main(["prepare-batching", lora_model.path, str(out), *args]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}: {len(lora_model.pairs)} LoRA pairs stacked" in text
    assert _batching_kernel(out) == kernel
    nodes = onnx.load(str(out)).graph.node
    fused = [n for n in nodes if (n.domain, n.op_type) == ("com.multilora", "LoraSlotMatMul")]
    gathers = [n for n in nodes if n.op_type == "Gather" and "lora_slot" in n.input]
    assert (len(fused), len(gathers)) == (
        (len(lora_model.pairs), 0) if kernel == "fused" else (0, 2 * len(lora_model.pairs))
    )
    with ml.Model(lora_model.path) as plain, ml.Model(str(out)) as prepared:
        assert prepared.version == plain.version


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8", "float32", "auto"])
def test_prepare_batching_lora_dtype(lora_model, tmp_path, capsys, dtype):
    import multilora as ml

    out = tmp_path / "prepared.onnx"
    assert cli.main(["prepare-batching", lora_model.path, str(out), "--lora-dtype", dtype]) == 0
    text = capsys.readouterr().out
    assert (f"{dtype} slots" in text) == (dtype != "auto"), text
    with ml.Model(lora_model.path) as plain, ml.Model(str(out)) as prepared:
        assert {i.dtype for i in prepared.lora_inputs} == {"float32" if dtype == "auto" else dtype}
        assert prepared.version == plain.version
    with pytest.raises(SystemExit) as e:
        cli.main(["prepare-batching", lora_model.path, str(tmp_path / "x.onnx"), "--lora-dtype", "int4"])
    assert e.value.code == 2 and "invalid choice: 'int4'" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "prepare-batching",
                lora_model.path,
                str(tmp_path / "g.onnx"),
                "--kernel",
                "gather",
                "--lora-dtype",
                "float16",
            ]
        )
        == 1
    )
    assert "needs --kernel fused" in capsys.readouterr().err
    assert not (tmp_path / "g.onnx").exists()


def test_prepare_batching_bad_kernel(lora_model, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["prepare-batching", lora_model.path, str(tmp_path / "x.onnx"), "--kernel", "sgmv"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'sgmv'" in err and "fused" in err and "gather" in err
    assert not (tmp_path / "x.onnx").exists()


def test_prepare_batching_errors(tmp_path, capsys):
    import numpy as np

    from multilora import testing as T

    half = T.make_lora_model(tmp_path / "half.onnx", layers=1, hidden=8, dtype=np.float16, seed=1)
    out = tmp_path / "out.onnx"
    assert cli.main(["prepare-batching", half.path, str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("multilora prepare-batching: ")
    assert half.pairs[0].a_name in err and "float16" in err and "--kernel gather" in err
    assert not out.exists()
    assert cli.main(["prepare-batching", half.path, str(out), "--kernel", "gather"]) == 0
    capsys.readouterr()
    assert cli.main(["prepare-batching", str(out), str(tmp_path / "again.onnx")]) == 1
    assert "prepared already" in capsys.readouterr().err
    assert cli.main(["prepare-batching", str(tmp_path / "missing.onnx"), str(tmp_path / "m.onnx")]) == 1
    assert "missing.onnx" in capsys.readouterr().err
