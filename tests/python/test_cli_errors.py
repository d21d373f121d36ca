"""Every `multilora` command turns a missing optional package or bad input into ONE line on stderr and a
non-zero exit code, never a traceback (issue 17). Each case runs the real command in a subprocess
(`python -m multilora ...`); a missing package is simulated by blocking its import (sys.modules[name] = None,
which makes `import name` raise ModuleNotFoundError) before the command starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List, Sequence

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GEN = FIXTURES / "generation" / "lora"
PEFT = FIXTURES / "peft" / "llama_a"


def run_cli(args: Sequence[str], block: Sequence[str] = (), cwd: Path | None = None) -> subprocess.CompletedProcess:
    code = (
        "import sys\n"
        f"for name in {list(block)!r}:\n"
        "    sys.modules[name] = None\n"
        "from multilora.__main__ import main\n"
        f"sys.exit(main({list(args)!r}))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess, command: str) -> str:
    """Asserts the failure shape and returns the one line."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines: List[str] = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"multilora {command}: "), lines[0]
    return lines[0]


@pytest.fixture
def garbage(tmp_path: Path) -> Path:
    p = tmp_path / "garbage.onnx"
    p.write_bytes(b"this is not a protobuf \xff\xfe" * 3)
    return p


# ---- inspect ----------------------------------------------------------------------------------------------------


def test_inspect_missing_file(tmp_path):
    line = one_line_error(run_cli(["inspect", str(tmp_path / "nope.onnx")]), "inspect")
    assert "no such file or folder" in line and "nope.onnx" in line


def test_inspect_garbage_model(garbage):
    line = one_line_error(run_cli(["inspect", str(garbage)]), "inspect")
    assert "MLORA_STATUS_" in line and "garbage.onnx" in line


def test_inspect_bad_peft_config(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{ not json")
    line = one_line_error(run_cli(["inspect", str(tmp_path)]), "inspect")
    assert "Expecting property name" in line  # json's own message, on one line


# ---- generate -----------------------------------------------------------------------------------------------------


def test_generate_without_tokenizers_names_the_extra():
    args = ["generate", "--model", str(GEN), "--prompt", "one of them", "--max-new-tokens", "2"]
    line = one_line_error(run_cli(args, block=["tokenizers"]), "generate")
    assert line == "multilora generate: needs the 'tokenizers' package: pip install 'multilora[generation]'"


def test_generate_missing_model_folder(tmp_path):
    line = one_line_error(run_cli(["generate", "--model", str(tmp_path / "nope"), "--prompt", "x"]), "generate")
    assert "no such model folder" in line


def test_generate_folder_that_is_no_model(tmp_path):
    line = one_line_error(run_cli(["generate", "--model", str(tmp_path), "--prompt", "x"]), "generate")
    assert "MLORA_STATUS_" in line


def test_generate_bad_adapter_file(tmp_path, garbage):
    args = ["generate", "--model", str(GEN), "--adapter", f"a={garbage}", "--prompt", "x", "--max-new-tokens", "1"]
    line = one_line_error(run_cli(args), "generate")
    assert "MLORA_STATUS_" in line and "garbage.onnx" in line


# ---- convert / check ------------------------------------------------------------------------------------------------


def test_convert_missing_folder(tmp_path):
    args = ["convert", str(tmp_path / "nope"), "-o", str(tmp_path / "o.onnx_adapter"), "--model", str(GEN)]
    line = one_line_error(run_cli(args), "convert")
    assert "not a PEFT folder" in line


def test_convert_broken_peft_folder(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"\x00\x01")
    args = ["convert", str(tmp_path), "-o", str(tmp_path / "o.onnx_adapter"), "--model", str(GEN)]
    one_line_error(run_cli(args), "convert")
    assert not (tmp_path / "o.onnx_adapter").exists()


def test_check_missing_model(tmp_path):
    line = one_line_error(run_cli(["check", "--model", str(tmp_path / "nope.onnx"), str(PEFT)]), "check")
    assert "nope.onnx" in line


def test_check_garbage_adapter_is_a_mismatch_row(garbage):
    # by design `check` reports an unreadable adapter as a row of its table (stdout) and exits 1
    proc = run_cli(["check", "--model", str(GEN), str(garbage)])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stderr == ""
    assert "expected 'TORT'" in proc.stdout and "0 matched, 1 mismatched" in proc.stdout


# ---- prepare-model / prepare-batching (need onnx: the `tools` extra) -----------------------------------------------


@pytest.mark.parametrize("command", ["prepare-model", "prepare-batching"])
def test_model_tools_without_onnx_name_the_extra(command, tmp_path):
    args = [command, str(GEN / "model.onnx"), str(tmp_path / "out.onnx")]
    if command == "prepare-model":
        args += ["--targets", "q_proj"]
    line = one_line_error(run_cli(args, block=["onnx"]), command)
    assert line == f"multilora {command}: needs the 'onnx' package: pip install 'multilora[tools]'"
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("command", ["prepare-model", "prepare-batching"])
def test_model_tools_garbage_input(command, garbage, tmp_path):
    args = [command, str(garbage), str(tmp_path / "out.onnx")]
    if command == "prepare-model":
        args += ["--targets", "q_proj"]
    one_line_error(run_cli(args), command)


@pytest.mark.parametrize("command", ["prepare-model", "prepare-batching"])
def test_model_tools_missing_input(command, tmp_path):
    args = [command, str(tmp_path / "nope.onnx"), str(tmp_path / "out.onnx")]
    if command == "prepare-model":
        args += ["--targets", "q_proj"]
    line = one_line_error(run_cli(args), command)
    assert "nope.onnx" in line


def test_prepare_model_no_matching_target(tmp_path):
    args = ["prepare-model", str(GEN / "model.onnx"), str(tmp_path / "out.onnx"), "--targets", "no_such_proj"]
    line = one_line_error(run_cli(args), "prepare-model")
    assert "no_such_proj" in line


# ---- the entry point itself -----------------------------------------------------------------------------------------


def test_module_entry_point_runs_the_cli(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "multilora", "inspect", str(tmp_path / "nope")], capture_output=True, text=True
    )
    one_line_error(proc, "inspect")
