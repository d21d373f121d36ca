"""``Model.run(..., fill_defaults=True)``: the inputs a decoder needs besides ``input_ids`` for one pass over
a prompt with no history — what onnxruntime-genai feeds on its first pass.

For every regular input absent from the feed:

- ``attention_mask``: ones ``[batch, seq]`` (every token is real);
- ``position_ids``: ``0..seq-1`` per row;
- past key/value inputs (4-D ``[batch, kv_heads, past, head_size]``, named ``past_key_values.*`` or
  ``past.*``, or as genai_config.json names them): empty pasts ``[batch, kv_heads, 0, head_size]``; kv_heads
  and head_size come from the declared dims, else from the folder's genai_config.json.

``batch`` and ``seq`` come from the fed ``input_ids`` (2-D). Any other absent input stays absent (the run
then names it). Fed inputs are never changed.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

_PAST = re.compile(r"^past(_key_values)?[._]")


def _genai(path: str) -> Dict[str, Any]:
    config = os.path.join(path, "genai_config.json")
    if not os.path.isdir(path) or not os.path.isfile(config):
        return {}
    with open(config, encoding="utf-8") as f:
        decoder: Dict[str, Any] = json.load(f).get("model", {}).get("decoder", {})
    return decoder


def _layer_names(pattern: Optional[str], layers: int) -> List[str]:
    if not pattern or "%d" not in pattern:
        return []
    return [pattern.replace("%d", str(i)) for i in range(layers)]


def fill_decoder_defaults(model: Any, feed: Mapping[str, Any]) -> Dict[str, Any]:
    out = dict(feed)
    decoder = _genai(model.path)
    names = decoder.get("inputs", {})
    ids_name = names.get("input_ids", "input_ids")
    if ids_name not in out:
        raise ValueError(f"run(fill_defaults=True): the feed needs {ids_name!r} (the batch and length come from it)")
    ids = np.asarray(out[ids_name])
    if ids.ndim != 2:
        raise ValueError(f"run(fill_defaults=True): {ids_name!r} must be 2-D [batch, seq], got shape {ids.shape}")
    batch, seq = ids.shape
    layers = int(decoder.get("num_hidden_layers", 0) or 0)
    pasts = set(_layer_names(names.get("past_key_names"), layers) + _layer_names(names.get("past_value_names"), layers))
    mask_name = names.get("attention_mask", "attention_mask")
    pos_name = names.get("position_ids", "position_ids")
    dtypes = {"int64": np.int64, "int32": np.int32}
    for info in model.inputs:
        if info.name in out:
            continue
        if info.name == mask_name and info.dtype in dtypes:
            out[info.name] = np.ones((batch, seq), dtype=dtypes[info.dtype])
        elif info.name == pos_name and info.dtype in dtypes:
            out[info.name] = np.broadcast_to(np.arange(seq, dtype=dtypes[info.dtype]), (batch, seq)).copy()
        elif (info.name in pasts or _PAST.match(info.name)) and len(info.shape) == 4:
            heads = info.shape[1] or decoder.get("num_key_value_heads")
            size = info.shape[3] or decoder.get("head_size")
            if not heads or not size:
                raise ValueError(
                    f"run(fill_defaults=True): input {info.name!r} {info.shape} leaves kv_heads/head_size open and "
                    "no genai_config.json gives them; feed it"
                )
            dtype = np.dtype(info.dtype) if info.dtype != "bfloat16" else np.dtype(np.uint16)
            if info.dtype == "bfloat16":
                import ml_dtypes

                dtype = np.dtype(ml_dtypes.bfloat16)
            out[info.name] = np.zeros((batch, int(heads), 0, int(size)), dtype=dtype)
    return out
