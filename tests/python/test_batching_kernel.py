"""The fused LoraSlotMatMul kernel's code paths (csrc/kernels/lora_slot_matmul.cpp): rank chunks of 16 held in
registers plus a tail, tokens four at a time plus a remainder, token blocks of 16 split over threads, and
slots written, evicted and rewritten at other ranks. Each row must equal the numpy reference of that row
alone (float64) and the same row run alone on the unprepared model.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import pytest

import multilora as ml
from multilora import testing as T
from multilora.prepare_batching import prepare_batching

from support import assert_close

TOL = 2e-5
# hidden 42: rows of A and outputs are not multiples of the vector width or of the unrolling. Ranks 16 (one
# chunk), 20 (chunk + tail 4), 37 (two chunks + tail 5), 3 (tail only); a mix of 16 and 20 composes to 36.
RANKS = {"r16": 16, "r20": 20, "r37": 37, "r3": 3}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("kernel")
    info = T.make_lora_model(d / "base.onnx", layers=1, hidden=42, modules=("q_proj", "up_proj", "down_proj"), seed=5)
    prepare_batching(info.path, d / "fused.onnx", kernel="fused")
    params = {n: T.make_adapter_params(info, rank=r, seed=40 + r) for n, r in RANKS.items()}
    files = {}
    for n, p in params.items():
        files[n] = str(d / f"{n}.onnx_adapter")
        T.write_ort_adapter(files[n], p)
    return info, str(d / "fused.onnx"), params, files


def _open(path: str, files: Dict[str, str], **options: int):
    model = ml.Model(path, **options)
    adapters = ml.Adapters(model)
    for n, f in files.items():
        adapters.load(f, n)
    return model, adapters


def _check(out: np.ndarray, info, params, plain, ids: np.ndarray, rows: List[List[str]]) -> None:
    plain_model, plain_adapters = plain
    for i, row in enumerate(rows):
        ref = T.reference_forward(info, ids[i : i + 1], [(params[n], 1.0) for n in row])
        assert_close(out[i : i + 1], ref, rtol=TOL, atol=TOL)
        opts = ml.RunOptions()
        opts.set_active_adapters(plain_adapters, row)
        (alone,) = plain_model.run(["logits"], {"input_ids": ids[i : i + 1]}, opts)
        assert_close(out[i : i + 1], alone, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seq", [1, 3, 5, 17, 33])
def test_rank_chunks_and_token_blocks(setup, seq, threads):
    info, path, params, files = setup
    rows = [["r16"], ["r20"], [], ["r37"], ["r3"], ["r16", "r20"]]
    model, adapters = _open(path, files, intra_op_threads=threads)
    plain = _open(info.path, files)
    with model, adapters, plain[0], plain[1]:
        ids = T.make_input_ids(info, batch=len(rows), seq=seq, seed=seq)
        opts = ml.RunOptions()
        opts.set_active_adapters_per_row(adapters, rows)
        (out,) = model.run(["logits"], {"input_ids": ids}, opts)
        _check(out, info, params, plain, ids, rows)


def test_slots_rewritten_at_other_ranks(setup):
    """S = 3: two resident sets; each batch evicts and rewrites slots with sets of other ranks, and the
    table's storage grows from rank 3 to 37 on the way. Every result stays exact."""
    info, path, params, files = setup
    model, adapters = _open(path, files, batch_slots=3)
    plain = _open(info.path, files)
    with model, adapters, plain[0], plain[1]:
        ids = T.make_input_ids(info, batch=2, seq=4, seed=1)
        for rows in ([["r3"], []], [["r3"], ["r16"]], [["r20"], ["r37"]], [["r3"], ["r16"]], [["r37"], ["r3"]]):
            opts = ml.RunOptions()
            opts.set_active_adapters_per_row(adapters, rows)
            (out,) = model.run(["logits"], {"input_ids": ids}, opts)
            _check(out, info, params, plain, ids, rows)
            assert model.batch_slots[1] <= 2
