"""Fixtures: a seeded LoRA-enabled model, adapters written by onnxruntime.AdapterFormat and by multilora,
and onnxruntime's own LoRA path as the baseline every number is compared with."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, Iterator

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # support.py

import multilora as ml  # noqa: E402
from multilora import testing as T  # noqa: E402

from support import OrtBaseline  # noqa: E402

GEN_LORA = Path(__file__).parent / "fixtures" / "generation" / "lora"  # builder + Olive GenAI folder, adapters a, b


@pytest.fixture(scope="module")
def gmodel() -> Iterator[ml.Model]:
    """The committed GenAI fixture folder (tests/python/fixtures/generation/lora), one per test module."""
    m = ml.Model(str(GEN_LORA))
    yield m
    m.close()


@pytest.fixture(scope="module")
def gregistry(gmodel: ml.Model) -> Iterator[ml.Adapters]:
    """gmodel's registry with the fixture's adapters "a" and "b" loaded."""
    r = ml.Adapters(gmodel)
    for name in ("a", "b"):
        r.load(str(GEN_LORA / "adapters" / f"{name}.onnx_adapter"), name)
    yield r
    r.close()


@pytest.fixture(scope="session")
def lora_model(tmp_path_factory: pytest.TempPathFactory) -> T.LoraModel:
    """2 layers, hidden 16, q_proj and v_proj adapted, float32."""
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    return T.make_lora_model(path, layers=2, hidden=16, modules=("q_proj", "v_proj"), seed=0)


@pytest.fixture(scope="session")
def wide_model(tmp_path_factory: pytest.TempPathFactory) -> T.LoraModel:
    """Every projection adapted (attention and MLP), each with its own rank dim name."""
    path = tmp_path_factory.mktemp("wide") / "wide.onnx"
    return T.make_lora_model(
        path, layers=2, hidden=16, modules=T.ATTN_MODULES + T.MLP_MODULES, seed=3, rank_dim="r_{layer}_{module}"
    )


@pytest.fixture(scope="session")
def shared_dim_model(tmp_path_factory: pytest.TempPathFactory) -> T.LoraModel:
    """q/k/v/o_proj adapted, every LoRA input sharing the one rank dim name "lora_r" (as model builders
    write): ONNX Runtime's memory planner then assumes every LoRA input has the same rank."""
    path = tmp_path_factory.mktemp("shared") / "shared.onnx"
    return T.make_lora_model(path, layers=2, hidden=16, modules=T.ATTN_MODULES, seed=7, rank_dim="lora_r")


@pytest.fixture(scope="session")
def baseline(lora_model: T.LoraModel) -> OrtBaseline:
    return OrtBaseline(lora_model.path)


@pytest.fixture
def model(lora_model: T.LoraModel) -> Iterator[ml.Model]:
    m = ml.Model(lora_model.path)
    yield m
    m.close()


@pytest.fixture
def adapters(model: ml.Model) -> Iterator[ml.Adapters]:
    a = ml.Adapters(model)
    yield a
    a.close()


@pytest.fixture(scope="session")
def ids(lora_model: T.LoraModel) -> np.ndarray:
    return T.make_input_ids(lora_model, batch=2, seq=5, seed=7)


@pytest.fixture(scope="session")
def params_sql(lora_model: T.LoraModel) -> Dict[str, np.ndarray]:
    """Rank 4 on every LoRA input."""
    return T.make_adapter_params(lora_model, rank=4, seed=1)


@pytest.fixture(scope="session")
def params_chat(lora_model: T.LoraModel) -> Dict[str, np.ndarray]:
    """Rank 8 on every LoRA input (overlaps sql everywhere)."""
    return T.make_adapter_params(lora_model, rank=8, seed=2)


@pytest.fixture(scope="session")
def params_q(lora_model: T.LoraModel) -> Dict[str, np.ndarray]:
    """Rank 4 on q_proj only."""
    return T.make_adapter_params(lora_model, rank=4, seed=3, modules=["q_proj"])


@pytest.fixture(scope="session")
def params_v(lora_model: T.LoraModel) -> Dict[str, np.ndarray]:
    """Rank 4 on v_proj only (disjoint from params_q)."""
    return T.make_adapter_params(lora_model, rank=4, seed=4, modules=["v_proj"])


@pytest.fixture(scope="session")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("adapters")


@pytest.fixture(scope="session")
def sql_ort(adapter_dir: Path, params_sql: Dict[str, np.ndarray]) -> str:
    """params_sql written by onnxruntime.AdapterFormat."""
    path = str(adapter_dir / "sql_ort.onnx_adapter")
    T.write_ort_adapter(path, params_sql, adapter_version=3)
    return path


@pytest.fixture(scope="session")
def sql_ours(adapter_dir: Path, params_sql: Dict[str, np.ndarray]) -> str:
    """params_sql written by multilora.write_adapter."""
    path = str(adapter_dir / "sql_ours.onnx_adapter")
    ml.write_adapter(path, params_sql, adapter_version=3)
    return path


@pytest.fixture(scope="session")
def chat_ours(adapter_dir: Path, params_chat: Dict[str, np.ndarray]) -> str:
    path = str(adapter_dir / "chat.onnx_adapter")
    ml.write_adapter(path, params_chat, adapter_version=1)
    return path


@pytest.fixture(scope="session")
def q_ours(adapter_dir: Path, params_q: Dict[str, np.ndarray]) -> str:
    path = str(adapter_dir / "q.onnx_adapter")
    ml.write_adapter(path, params_q)
    return path


@pytest.fixture(scope="session")
def v_ort(adapter_dir: Path, params_v: Dict[str, np.ndarray]) -> str:
    path = str(adapter_dir / "v.onnx_adapter")
    T.write_ort_adapter(path, params_v)
    return path
