"""``multilora prepare-batching``: rewrite a LoRA-enabled ONNX model so one Run serves rows with different
adapter sets (DESIGN.md §6; needs ``onnx``).

Every LoRA pair ``y = x·W + (x·A)·B`` (``A [in, r]`` and ``B [r, out]`` optional graph inputs with zero-rank
defaults, fed by ``MatMul(MatMul(x, A), B)``) becomes

    A  ->  A_stack [S, in, R]   default [1, in, 0]   (same input name)
    B  ->  B_stack [S, R, out]  default [1, 0, out]  (same input name)
    x·A·B  ->  MatMul(MatMul(x, Gather(A_stack, lora_slot)), Gather(B_stack, lora_slot))

plus one int64 input ``lora_slot [batch]`` (default ``[0]``, which broadcasts over the batch). ``x`` must be
3-D ``[batch, seq, in]`` (as in onnxruntime-genai builder models and ``multilora.testing`` models): the
gathered stacks are ``[batch, in, R]`` / ``[batch, R, out]`` and the MatMuls are batched. ``S`` is one symbolic
dim (``lora_slots``) shared by every stack; ``R`` gets one symbolic name per pair. With nothing fed the
output is the base model's, exactly. The input names are kept, so adapters validate as before, and the
model's LoRA signature (``Model.version``) is unchanged.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Union

__all__ = ["prepare_batching", "SLOT_INPUT", "SLOT_DIM"]

PathLike = Union[str, "os.PathLike[str]"]

SLOT_INPUT = "lora_slot"
SLOT_DIM = "lora_slots"


def prepare_batching(input_path: PathLike, output_path: PathLike) -> List[str]:
    """Writes ``input_path`` rewritten for per-row adapters to ``output_path``; returns the LoRA A input names
    of the pairs rewritten. Raises ValueError when the model has no LoRA pair, is prepared already, or a
    pair's ``x`` is known not to be 3-D."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    src = os.fspath(input_path)
    model = onnx.load(src)
    g = model.graph
    if any(i.name == SLOT_INPUT for i in g.input) or any(t.name == SLOT_INPUT for t in g.initializer):
        raise ValueError(f"{src}: input {SLOT_INPUT!r} exists already (is the model prepared already?)")
    inits: Dict[str, Any] = {t.name: t for t in g.initializer}
    # Some exporters list every LoRA input twice: keep the first declaration.
    seen: set = set()
    inputs: List[Any] = []
    for vi in g.input:
        if vi.name in seen:
            continue
        seen.add(vi.name)
        inputs.append(vi)
    by_name = {vi.name: vi for vi in inputs}

    def is_lora_input(name: str) -> bool:
        t = inits.get(name)
        return name in by_name and t is not None and len(t.dims) == 2 and 0 in list(t.dims)

    consumers: Dict[str, List[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    # Ranks of the MatMuls' x, where shape inference knows them.
    ranks: Dict[str, int] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
                ranks[vi.name] = len(vi.type.tensor_type.shape.dim)
    except Exception:  # noqa: BLE001 - shape inference is only a check here
        pass

    taken = {i.name for i in g.input} | set(inits) | {o for n in g.node for o in n.output}

    def fresh(name: str) -> str:
        base, k = name, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        return name

    pairs: List[str] = []
    rewritten: Dict[int, List[Any]] = {}  # id(node) -> replacement nodes
    for n in g.node:
        if n.op_type != "MatMul" or len(n.input) != 2 or not is_lora_input(n.input[1]):
            continue
        a_name = n.input[1]
        xa_users = consumers.get(n.output[0], [])
        if len(consumers.get(a_name, [])) != 1 or len(xa_users) != 1:
            continue
        m2 = xa_users[0]
        if m2.op_type != "MatMul" or len(m2.input) != 2 or m2.input[0] != n.output[0]:
            continue
        b_name = m2.input[1]
        if not is_lora_input(b_name) or len(consumers.get(b_name, [])) != 1:
            continue
        a_init, b_init = inits[a_name], inits[b_name]
        n_in, n_out = int(a_init.dims[0]), int(b_init.dims[1])
        if int(a_init.dims[1]) != 0 or int(b_init.dims[0]) != 0:
            continue
        x = n.input[0]
        if ranks.get(x, 3) != 3:
            raise ValueError(
                f"{src}: the input {x!r} of the LoRA pair {a_name!r} has rank {ranks[x]}; per-row batching needs "
                "a 3-D [batch, seq, in] activation"
            )
        elem = a_init.data_type
        dt = helper.tensor_dtype_to_np_dtype(elem)
        prefix = re.sub(r"\.?lora_A.*$", "", a_name) or a_name
        r = "lora_r_" + re.sub(r"[^0-9A-Za-z]+", "_", prefix).strip("_")
        # Stacked defaults and declarations (same names).
        a_init.CopyFrom(numpy_helper.from_array(np.zeros((1, n_in, 0), dt), a_name))
        b_init.CopyFrom(numpy_helper.from_array(np.zeros((1, 0, n_out), dt), b_name))
        by_name[a_name].CopyFrom(helper.make_tensor_value_info(a_name, elem, [SLOT_DIM, n_in, r]))
        by_name[b_name].CopyFrom(helper.make_tensor_value_info(b_name, elem, [SLOT_DIM, r, n_out]))
        ga = fresh(f"{prefix}/lora_A/Gather_output_0")
        gb = fresh(f"{prefix}/lora_B/Gather_output_0")
        rewritten[id(n)] = [
            helper.make_node("Gather", [a_name, SLOT_INPUT], [ga], name=fresh(f"{prefix}/lora_A/Gather"), axis=0),
            helper.make_node("MatMul", [x, ga], list(n.output), name=n.name),
        ]
        rewritten[id(m2)] = [
            helper.make_node("Gather", [b_name, SLOT_INPUT], [gb], name=fresh(f"{prefix}/lora_B/Gather"), axis=0),
            helper.make_node("MatMul", [m2.input[0], gb], list(m2.output), name=m2.name),
        ]
        pairs.append(a_name)
    if not pairs:
        raise ValueError(f"{src}: no LoRA pair MatMul(MatMul(x, A [in, 0]), B [0, out]) with optional inputs A, B")

    new_nodes: List[Any] = []
    for n in g.node:
        new_nodes.extend(rewritten.get(id(n), [n]))
    del g.node[:]
    g.node.extend(new_nodes)
    del g.input[:]
    g.input.extend(inputs)
    g.input.append(helper.make_tensor_value_info(SLOT_INPUT, TensorProto.INT64, ["lora_batch"]))
    g.initializer.append(numpy_helper.from_array(np.zeros((1,), np.int64), SLOT_INPUT))
    # Gather needs opset >= 1 and batched MatMul opset >= 1: any opset works; IR >= 4 keeps inputs optional.
    if model.ir_version < 4:
        model.ir_version = 4
    out = os.fspath(output_path)

    def check(m: Any) -> None:
        try:
            onnx.checker.check_model(m)
        except onnx.checker.ValidationError as e:
            # onnxruntime contrib ops in the default domain (SimplifiedLayerNormalization in GenAI builder
            # models) are unknown to the onnx checker; anything else is a real error.
            if "No Op registered" not in str(e):
                raise

    if model.ByteSize() < 1_800_000_000:  # protobuf's 2 GiB limit: large models keep their weights outside
        check(model)
        onnx.save(model, out)
    else:
        onnx.save(model, out, save_as_external_data=True, location=os.path.basename(out) + ".data")
        check(out)
    return pairs


def _run(args: Any) -> int:
    import sys

    try:
        pairs = prepare_batching(args.input, args.output)
    except (OSError, ValueError) as e:
        print(f"multilora prepare-batching: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: {len(pairs)} LoRA pairs stacked (input {SLOT_INPUT!r} selects each row's slot)")
    return 0


def add_prepare_batching_command(subparsers: Any) -> None:
    """Adds ``prepare-batching`` to an argparse sub-parsers object."""
    p = subparsers.add_parser(
        "prepare-batching",
        help="rewrite a LoRA-enabled model for per-row adapters in one Run (needs the onnx package)",
        description="Stack every LoRA pair's inputs (A [S, in, R], B [S, R, out]) and add the int64 input "
        "'lora_slot' [batch] selecting each row's slot; the base output is unchanged when nothing is fed.",
    )
    p.add_argument("input", help="a LoRA-enabled .onnx model")
    p.add_argument("output", help="the .onnx file to write")
    p.set_defaults(func=_run)
