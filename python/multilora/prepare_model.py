"""``multilora prepare-model``: add optional LoRA inputs to a plain exported ONNX model (needs ``onnx``).

Every ``MatMul`` whose second input is a 2-D initializer ``W [in, out]`` whose name contains one of the
target module names as a dotted component (``model.layers.0.self_attn.q_proj.weight`` for ``q_proj``) becomes

    y = MatMul(x, W) + MatMul(MatMul(x, A), B)

with ``A [in, r]`` and ``B [r, out]`` new graph inputs whose same-named initializers are zero-rank defaults
(``[in, 0]``, ``[0, out]``), W's dtype, named ``<prefix>.lora_A.MatMul.weight`` / ``<prefix>.lora_B.MatMul.weight``
where ``<prefix>`` is W's name without ``.MatMul.weight`` / ``.weight`` — the names onnxruntime-genai's model
builder uses (docs/design.md §3). Each projection gets its own rank dim name, so adapters may use different ranks
per projection. With the defaults the output is the base model's, exactly (an empty MatMul adds zeros).
"""

from __future__ import annotations

import os
import re
from typing import Any, List, Sequence, Union

__all__ = ["prepare_model"]

PathLike = Union[str, "os.PathLike[str]"]


def _prefix(weight: str) -> str:
    for suffix in (".MatMul.weight", ".weight"):
        if weight.endswith(suffix):
            return weight[: -len(suffix)]
    return weight


def prepare_model(input_path: PathLike, output_path: PathLike, targets: Sequence[str]) -> List[str]:
    """Writes ``input_path`` with LoRA inputs on the target projections to ``output_path``; returns the
    prefixes of the projections adapted. Raises ValueError when nothing matches, when a LoRA input name is
    already taken, or when the model is not what it should be."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    if not targets:
        raise ValueError("no targets given")
    model = onnx.load(os.fspath(input_path))
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    taken = {i.name for i in g.input} | set(inits) | {o for n in g.node for o in n.output}
    pats = [re.compile(rf"(^|[./]){re.escape(t)}([./]|$)") for t in targets]

    new_nodes: List[Any] = []
    added: List[str] = []
    for node in g.node:
        new_nodes.append(node)
        if node.op_type != "MatMul" or len(node.input) != 2 or node.input[1] not in inits:
            continue
        w = inits[node.input[1]]
        if len(w.dims) != 2 or not any(p.search(w.name) for p in pats):
            continue
        prefix = _prefix(w.name)
        a_name, b_name = f"{prefix}.lora_A.MatMul.weight", f"{prefix}.lora_B.MatMul.weight"
        for n in (a_name, b_name):
            if n in taken:
                raise ValueError(f"{os.fspath(input_path)}: {n!r} already exists (is the model prepared already?)")
        n_in, n_out = int(w.dims[0]), int(w.dims[1])
        dt = helper.tensor_dtype_to_np_dtype(w.data_type)
        rank = "lora_r_" + re.sub(r"[^0-9A-Za-z]+", "_", prefix).strip("_")
        g.initializer.append(numpy_helper.from_array(np.zeros((n_in, 0), dt), a_name))
        g.initializer.append(numpy_helper.from_array(np.zeros((0, n_out), dt), b_name))
        g.input.append(helper.make_tensor_value_info(a_name, w.data_type, [n_in, rank]))
        g.input.append(helper.make_tensor_value_info(b_name, w.data_type, [rank, n_out]))
        y = node.output[0]
        base = f"{prefix}/MatMul_base_output"
        xa, xab = f"{prefix}/lora_A/MatMul_output_0", f"{prefix}/lora_B/MatMul_output_0"
        for n in (base, xa, xab):
            if n in taken:
                raise ValueError(f"{os.fspath(input_path)}: value name {n!r} already exists")
        node.output[0] = base
        new_nodes.append(helper.make_node("MatMul", [node.input[0], a_name], [xa], name=f"{prefix}/lora_A/MatMul"))
        new_nodes.append(helper.make_node("MatMul", [xa, b_name], [xab], name=f"{prefix}/lora_B/MatMul"))
        new_nodes.append(helper.make_node("Add", [base, xab], [y], name=f"{prefix}/lora/Add"))
        taken.update({a_name, b_name, base, xa, xab})
        added.append(prefix)
    if not added:
        raise ValueError(
            f"{os.fspath(input_path)}: no MatMul has a 2-D weight initializer named after any of {list(targets)}"
        )
    del g.node[:]
    g.node.extend(new_nodes)
    out = os.fspath(output_path)
    if model.ByteSize() < 1_800_000_000:  # protobuf's 2 GiB limit: large models keep their weights outside
        onnx.checker.check_model(model)
        onnx.save(model, out)
    else:
        onnx.save(model, out, save_as_external_data=True, location=os.path.basename(out) + ".data")
        onnx.checker.check_model(out)
    return added
