"""``multilora prepare-batching``: rewrite a LoRA-enabled ONNX model so one Run serves rows with different
adapter sets (docs/design.md §6; needs ``onnx``).

Every LoRA pair ``y = x·W + (x·A)·B`` (``A [in, r]`` and ``B [r, out]`` optional graph inputs with zero-rank
defaults, fed by ``MatMul(MatMul(x, A), B)``) keeps its input names, now declared stacked over the slots of
the model's slot table:

    A  ->  A_stack [S, in, R]   default [1, in, 0]
    B  ->  B_stack [S, R, out]  default [1, 0, out]

plus one int64 input ``lora_slot [batch]`` (default ``[0]``, which broadcasts over the batch) giving each
row its slot. ``S`` is one symbolic dim (``lora_slots``) shared by every stack; ``R`` gets one symbolic name
per pair. The pair itself becomes, by ``kernel``:

``fused`` (the default; float32 models only)
    one node ``com.multilora.LoraSlotMatMul(x, A, B, lora_slot, lora_ranks[, base])`` with the int attribute
    ``pair``: multilora's own CPU kernel, which reads each row's slot at its own rank, once. Where the pair's
    output is read only by one ``Add(base, delta)`` (the LoRA layout of the GenAI builder and of PEFT exports),
    the op takes that Add in: ``base`` is its other operand and the op writes the Add's output, ``base + LoRA``,
    in place of ``base`` where ONNX Runtime allows (a pair no row has an adapter for then costs no work and no
    extra node); otherwise it writes the second MatMul's output and the graph adds it as before. ``pair`` is
    the index of the pair's A name in ``sorted()`` A names; the extra int64 input ``lora_ranks [P, S]`` (P
    pairs, default zeros ``[P, 1]``) holds each pair's rank per slot.
    The model then runs only where that kernel is registered (multilora); the model's metadata records
    ``multilora.batching_kernel = fused``. ``lora_dtype`` (``auto`` = the model's own, float32; ``float16``;
    ``bfloat16``) is the dtype ``A`` and ``B`` are declared in, i.e. the slot storage: the kernel widens
    16-bit slots to float32 in registers and accumulates in float32. The runtime accepts float32, float16 and
    bfloat16 adapters for such a model and converts them to the slot dtype when a set is built (exact for an
    adapter already in that dtype, rounded otherwise; docs/design.md §6). ``int8``: A and B int8 plus two
    float32 inputs per pair the runtime fills, ``<A>_scales [S, ceil(in/32), R]`` and ``<B>_scales
    [S, ceil(R/32), out]`` (node inputs 6 and 7; input 5 is ``base``, "" when the pair has no Add), named in
    the metadata ``multilora.slot_scales``; float adapters are quantized per block of 32 rows along K when a
    set is built (lossy), int4 (MatMulNBits) adapters are held exactly.
``gather``
    ``MatMul(MatMul(x, Gather(A_stack, lora_slot)), Gather(B_stack, lora_slot))``: standard ONNX, any
    dtype, slots zero-padded to a common rank (exact, but the gather copies every row's weights).

Quantized LoRA pairs (the ONNX Runtime GenAI builder at ``-p int4`` quantizes the LoRA MatMuls too, and
Olive's extraction makes each ``MatMulNBits`` node's weight ``*.weight_Q4``, scales and zero points the
optional inputs) are rewritten the same way with float32 A/B inputs named after the weight without its
``_Q4`` suffix (``...lora_A.MatMul.weight``, the name Olive gives an unquantized LoRA weight). The model's
metadata ``multilora.dequantize`` lists, per float input, the quantized names, bits and block size: multilora
dequantizes an adapter's quantized tensors into those inputs when it loads the adapter, so the prepared model
serves any rank (the quantized node fixed one), and adapters with float weights load too.

Packed q/k/v (fused kernel): where a ``GroupQueryAttention`` reads query, key and value from three
projections of one input (each through its LoRA pair's op, or directly) — three ``MatMul`` with constant
weights, or three ``MatMulNBits`` with the same attributes but ``N`` — the three become one over the weights
concatenated along ``N``, what the GenAI builder writes for a model without LoRA (``qkv_proj``), and the
attention reads the packed output (key and value ""). The pairs' ops then add their terms to their column
ranges of that output in place, one after the other (attribute ``column_offset``), so the base graph is the
builder's base graph: the split projections cost ~3% per token on an int4 model at batch 1 (docs/notes.md,
2026-12-07).

``x`` must be 3-D ``[batch, seq, in]`` (as in onnxruntime-genai builder models and ``multilora.testing``
models). With nothing fed the output is the base model's, exactly. The input names are kept, so adapters
validate as before, and the model's LoRA signature (``Model.version``) is unchanged.

Base graph (default; ``base_graph=False`` / ``--no-base-graph`` skips it): a companion ``<stem>.base.onnx``
beside the output, the same graph with every LoRA branch removed (each pair's ``Add(y, delta)`` is dropped
and ``y`` flows straight on; the LoRA inputs, ``lora_slot`` and ``lora_ranks`` are gone). Both graphs keep
their weights in ONE external data file, ``<output name>.data`` (tensors of 1 KiB or more, 4 KiB-aligned),
which both reference, and the LoRA graph's metadata ``multilora.base_graph`` names the companion (a path
relative to the LoRA graph's folder). multilora opens it as a second session over the same weights and runs
it whenever no row of a run has an adapter, so a cleared set costs what the model without LoRA costs.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Tuple, Union

__all__ = [
    "prepare_batching",
    "KERNELS",
    "LORA_DTYPES",
    "SLOT_INPUT",
    "SLOT_DIM",
    "RANKS_INPUT",
    "OP_DOMAIN",
    "OP_TYPE",
    "KERNEL_METADATA_KEY",
    "DEQUANT_METADATA_KEY",
    "SLOT_SCALES_METADATA_KEY",
    "INT8_BLOCK",
    "BASE_GRAPH_METADATA_KEY",
    "base_graph_name",
]

PathLike = Union[str, "os.PathLike[str]"]

SLOT_INPUT = "lora_slot"
SLOT_DIM = "lora_slots"
RANKS_INPUT = "lora_ranks"
OP_DOMAIN = "com.multilora"
OP_TYPE = "LoraSlotMatMul"
KERNEL_METADATA_KEY = "multilora.batching_kernel"
DEQUANT_METADATA_KEY = "multilora.dequantize"
SLOT_SCALES_METADATA_KEY = "multilora.slot_scales"
BASE_GRAPH_METADATA_KEY = "multilora.base_graph"
BASE_GRAPH_OF_METADATA_KEY = "multilora.base_graph_of"  # in the companion: the LoRA graph it belongs to
_EXTERNAL_MIN_BYTES = 1024  # tensors this large or larger go to the shared external data file
_EXTERNAL_ALIGN = 4096  # their offsets are page-aligned (ONNX Runtime maps the file)


def base_graph_name(output_name: str) -> str:
    """The companion base graph's file name for a prepared model's file name: ``model.onnx`` ->
    ``model.base.onnx``."""
    stem, ext = os.path.splitext(os.path.basename(output_name))
    return f"{stem}.base{ext or '.onnx'}"


KERNELS = ("fused", "gather")
LORA_DTYPES = ("auto", "float32", "float16", "bfloat16", "int8")
INT8_BLOCK = 32  # int8 slots: rows along K (A's input rows, B's rank rows) per float32 scale


def prepare_batching(
    input_path: PathLike,
    output_path: PathLike,
    kernel: str = "fused",
    base_graph: bool = True,
    lora_dtype: str = "auto",
) -> List[str]:
    """Writes ``input_path`` rewritten for per-row adapters to ``output_path``; returns the LoRA A input names
    of the pairs rewritten (graph order). Both may be folders: a GenAI model folder (genai_config.json) is
    copied with its decoder rewritten (see ``_prepare_folder``). ``kernel`` is ``"fused"`` (multilora's
    LoraSlotMatMul op, float32) or ``"gather"`` (standard ONNX Gather + batched MatMul, any dtype).
    ``base_graph`` also writes the companion graph without the LoRA branch (module docstring). ``lora_dtype``
    (one of ``LORA_DTYPES``) is the fused kernel's slot dtype; ``"auto"`` keeps the model's LoRA dtype (the
    gather kernel takes only that). Raises ValueError when the kernel or lora_dtype is unknown (or not the
    model's for gather), the model has no LoRA pair, is prepared already, a pair's ``x`` is known not to be
    3-D, (fused) a pair is not float32, or (base graph) a pair's output is not added to the base output by one
    Add."""
    if kernel not in KERNELS:
        raise ValueError(f"prepare_batching: unknown kernel {kernel!r}; expected one of {', '.join(KERNELS)}")
    if lora_dtype not in LORA_DTYPES:
        raise ValueError(
            f"prepare_batching: unknown lora_dtype {lora_dtype!r}; expected one of {', '.join(LORA_DTYPES)}"
        )
    if os.path.isdir(os.fspath(input_path)):
        return _prepare_folder(os.fspath(input_path), os.fspath(output_path), kernel, base_graph, lora_dtype)
    return _prepare_file(input_path, output_path, kernel, base_graph, lora_dtype)


def _subgraphs(node: Any) -> List[Any]:
    """The graphs a node's attributes hold (If/Loop/Scan bodies), for walks that must see them too."""
    out = []
    for attr in node.attribute:
        if attr.HasField("g"):
            out.append(attr.g)
        out.extend(attr.graphs)
    return out


def _external_files(model_path: str) -> List[str]:
    """Paths (relative to the model's folder) of the external data files the model's tensors name."""
    import onnx
    from onnx import TensorProto

    out = set()

    def walk(graph: Any) -> None:
        tensors = list(graph.initializer) + [s.values for s in graph.sparse_initializer]
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    tensors.append(attr.t)
                tensors.extend(attr.tensors)
            for sub in _subgraphs(node):
                walk(sub)
        for t in tensors:
            if t.data_location == TensorProto.EXTERNAL:
                for entry in t.external_data:
                    if entry.key == "location":
                        out.add(os.path.normpath(entry.value))

    walk(onnx.load(model_path, load_external_data=False).graph)
    return sorted(out)


def _prepare_folder(src: str, dst: str, kernel: str, base_graph: bool = True, lora_dtype: str = "auto") -> List[str]:
    """A GenAI folder (genai_config.json naming model.decoder.filename): the decoder is rewritten into ``dst``
    under the same name; every other file (genai_config.json, tokenizer files, adapters, other models) is
    copied, except the decoder's own external data files (the rewritten model carries its weights)."""
    import json
    import shutil

    config = os.path.join(src, "genai_config.json")
    if not os.path.isfile(config):
        raise ValueError(f"{src}: a folder must hold genai_config.json (a GenAI model folder)")
    with open(config, encoding="utf-8") as f:
        try:
            name = json.load(f)["model"]["decoder"]["filename"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{config}: cannot read model.decoder.filename ({e})") from e
    if not isinstance(name, str) or os.path.isabs(name) or os.path.normpath(name).startswith(".."):
        raise ValueError(f"{config}: model.decoder.filename {name!r} is not a path inside the folder")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise ValueError(f"{dst}: the output folder must differ from the input folder")
    if os.path.exists(dst) and (not os.path.isdir(dst) or os.listdir(dst)):
        raise ValueError(f"{dst}: the output must be a new or empty folder")
    model = os.path.normpath(os.path.join(src, name))
    if not os.path.isfile(model):
        raise ValueError(f"{config}: model.decoder.filename {name!r}: no such file")
    rel_dir = os.path.dirname(os.path.relpath(model, src))
    skip = {os.path.normpath(os.path.relpath(model, src))}
    skip.update(os.path.normpath(os.path.join(rel_dir, e)) for e in _external_files(model))
    created = not os.path.exists(dst)
    os.makedirs(dst, exist_ok=True)
    try:
        for root, _dirs, files in os.walk(src):
            for f in files:
                rel = os.path.normpath(os.path.relpath(os.path.join(root, f), src))
                if rel in skip:
                    continue
                os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
                shutil.copy2(os.path.join(src, rel), os.path.join(dst, rel))
        out = os.path.join(dst, os.path.relpath(model, src))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        return _prepare_file(model, out, kernel, base_graph, lora_dtype)
    except BaseException:
        # no half-written folder is left behind (it was new or empty)
        if created:
            shutil.rmtree(dst, ignore_errors=True)
        else:
            for entry in os.listdir(dst):
                path = os.path.join(dst, entry)
                shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
        raise


def _prepare_file(
    input_path: PathLike, output_path: PathLike, kernel: str, base_graph: bool = True, lora_dtype: str = "auto"
) -> List[str]:
    import onnx

    src = os.fspath(input_path)
    model = onnx.load(src)
    graph = _Graph(model, src)
    found = _find_pairs(graph)
    if kernel == "fused":
        _check_fused(graph, found)
    slot_elem = _slot_elem(graph, found, kernel, lora_dtype)
    # Each pair's output (x·A)·B keeps its name through the rewrite: the base graph drops what adds it.
    deltas = [m2.output[0] for _, m2, _, _ in found]
    if base_graph:
        _check_deltas(graph, deltas)
    pairs = _rewrite_pairs(graph, found, kernel, slot_elem)
    if kernel == "fused":
        _pack_qkv(graph)
    _add_slot_inputs(graph, len(pairs), kernel)
    out = os.fspath(output_path)
    if base_graph:
        _save_with_base(model, out, deltas)
    else:
        _save(model, out)
    return pairs


# A LoRA pair found in the graph: (first MatMul x·A, second MatMul (x·A)·B, A input name, B input name).
Pair = Tuple[Any, Any, str, str]


class _Graph:
    """What the rewrite needs to know about the model's graph: declarations, initializers, consumers, the
    ranks shape inference knows, and the names taken (for fresh node and tensor names)."""

    def __init__(self, model: Any, src: str) -> None:
        import onnx

        self.model, self.src = model, src
        g = self.g = model.graph
        for name in (SLOT_INPUT, RANKS_INPUT):
            if any(i.name == name for i in g.input) or any(t.name == name for t in g.initializer):
                raise ValueError(f"{src}: input {name!r} exists already (is the model prepared already?)")
        self.inits: Dict[str, Any] = {t.name: t for t in g.initializer}
        # Some exporters list every LoRA input twice: keep the first declaration.
        seen: set = set()
        self.inputs: List[Any] = []
        for vi in g.input:
            if vi.name in seen:
                continue
            seen.add(vi.name)
            self.inputs.append(vi)
        self.by_name = {vi.name: vi for vi in self.inputs}
        self.graph_outputs = {o.name for o in g.output}
        self.consumers: Dict[str, List[Any]] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        # Ranks of the MatMuls' x, where shape inference knows them.
        self.ranks: Dict[str, int] = {}
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
            for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
                if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
                    self.ranks[vi.name] = len(vi.type.tensor_type.shape.dim)
        except Exception:  # noqa: BLE001 - shape inference is only a check here
            pass
        self.dequant: List[Dict[str, Any]] = []  # quantized pair halves replaced by float inputs
        self.slot_scales: Dict[str, str] = {}  # int8 slots: LoRA input -> the scales input the runtime fills
        self.extra_inputs: List[Any] = []  # declarations of those scales inputs
        self.taken = (
            {i.name for i in g.input}
            | set(self.inits)
            | {o for n in g.node for o in n.output}
            | {n.name for n in g.node}
        )

    def is_lora_input(self, name: str) -> bool:
        t = self.inits.get(name)
        return name in self.by_name and t is not None and len(t.dims) == 2 and 0 in list(t.dims)

    def is_quant_lora_input(self, name: str) -> bool:
        """A MatMulNBits weight Olive made an optional input: declared, with an empty default."""
        t = self.inits.get(name)
        return name in self.by_name and t is not None and 0 in list(t.dims)

    def fresh(self, name: str) -> str:
        base, k = name, 0
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name


def _is_matmul(n: Any) -> bool:
    return bool(n.op_type == "MatMul" and n.domain in ("", "ai.onnx") and len(n.input) == 2)


def _is_nbits(n: Any) -> bool:
    return bool(n.op_type == "MatMulNBits" and n.domain == "com.microsoft" and len(n.input) >= 3)


def _nbits_attrs(n: Any) -> Dict[str, int]:
    from onnx import helper

    return {a.name: int(helper.get_attribute_value(a)) for a in n.attribute if a.type == a.INT}


def _find_quant_pair(graph: _Graph, n: Any) -> Any:
    """MatMulNBits(MatMulNBits(x, A_q, A_scales[, A_zp]), B_q, B_scales[, B_zp]) with optional A_q and B_q
    used only there: the pair with float32 inputs declared in place of the quantized ones, else None."""
    if not _is_nbits(n) or not graph.is_quant_lora_input(n.input[1]) or len(graph.consumers.get(n.input[1], [])) != 1:
        return None
    users = graph.consumers.get(n.output[0], [])
    if len(users) != 1 or not _is_nbits(users[0]) or users[0].input[0] != n.output[0]:
        return None
    m2 = users[0]
    if not graph.is_quant_lora_input(m2.input[1]) or len(graph.consumers.get(m2.input[1], [])) != 1:
        return None
    a, b = _nbits_attrs(n), _nbits_attrs(m2)
    if a.get("N") != b.get("K") or n.output[0] in graph.graph_outputs:
        return None
    return m2


def _declare_dequantized(graph: _Graph, n: Any, m2: Any) -> Tuple[str, str]:
    """Replaces the quantized inputs of the pair (n, m2) by float32 A [in, 0] / B [0, out] optional inputs (the
    weight's name without ``_Q<bits>``), recorded for multilora's dequantization at adapter load."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    names = []
    for node, side in ((n, "A"), (m2, "B")):
        attrs = _nbits_attrs(node)
        q = node.input[1]
        scales = node.input[2]
        zp = node.input[3] if len(node.input) > 3 and node.input[3] else ""
        if scales in graph.inits and graph.inits[scales].data_type != TensorProto.FLOAT:
            raise ValueError(
                f"{graph.src}: the quantized LoRA node {node.name!r} has "
                f"{TensorProto.DataType.Name(graph.inits[scales].data_type).lower()} scales; per-row batching of "
                "quantized LoRA needs a float32 model"
            )
        if zp and zp in graph.inits and graph.inits[zp].data_type != TensorProto.UINT8:
            raise ValueError(f"{graph.src}: the quantized LoRA node {node.name!r} has non-uint8 zero points")
        base = re.sub(r"_Q[0-9]+$", "", q)
        target = base if base != q and base not in graph.taken else graph.fresh(base + "_dequantized")
        graph.taken.add(target)
        shape = [attrs["K"], 0] if side == "A" else [0, attrs["N"]]
        for name in (q, scales, zp):
            if name and name in graph.by_name and name in graph.inits:
                graph.inputs.remove(graph.by_name.pop(name))
        dropped = {x for x in (q, scales, zp) if x}
        # delete by index (no copy of the other initializers: an int4 model's weights are large)
        for i in reversed([i for i, t in enumerate(graph.g.initializer) if t.name in dropped]):
            del graph.g.initializer[i]
        for x in dropped:
            graph.inits.pop(x, None)
        graph.g.initializer.append(numpy_helper.from_array(np.zeros(shape, np.float32), target))
        graph.inits[target] = graph.g.initializer[len(graph.g.initializer) - 1]
        vi = helper.make_tensor_value_info(
            target, TensorProto.FLOAT, ["lora_r", shape[1]] if side == "B" else [shape[0], "lora_r"]
        )
        graph.inputs.append(vi)
        graph.by_name[target] = vi
        graph.consumers[target] = [node]
        graph.dequant.append(
            {
                "target": target,
                "weight": q,
                "scales": scales,
                "zero_points": zp or None,
                "partner_weight": n.input[1] if side == "B" else None,
                "bits": int(attrs.get("bits", 4)),
                "block_size": int(attrs["block_size"]),
            }
        )
        names.append(target)
    return names[0], names[1]


def _find_pairs(graph: _Graph) -> List[Pair]:
    """Every MatMul(MatMul(x, A [in, 0]), B [0, out]) whose A and B are optional inputs used only there, and
    every quantized pair (MatMulNBits twice, see _find_quant_pair; declared float32 here)."""
    found: List[Pair] = []
    for n in list(graph.g.node):
        m2q = _find_quant_pair(graph, n)
        if m2q is not None:
            x = n.input[0]
            if graph.ranks.get(x, 3) != 3:
                raise ValueError(
                    f"{graph.src}: the input {x!r} of the quantized LoRA node {n.name!r} has rank "
                    f"{graph.ranks[x]}; per-row batching needs a 3-D [batch, seq, in] activation"
                )
            a_name, b_name = _declare_dequantized(graph, n, m2q)
            found.append((n, m2q, a_name, b_name))
            continue
        if not _is_matmul(n) or not graph.is_lora_input(n.input[1]):
            continue
        a_name = n.input[1]
        xa_users = graph.consumers.get(n.output[0], [])
        if len(graph.consumers.get(a_name, [])) != 1 or len(xa_users) != 1:
            continue
        m2 = xa_users[0]
        if not _is_matmul(m2) or m2.input[0] != n.output[0]:
            continue
        b_name = m2.input[1]
        if not graph.is_lora_input(b_name) or len(graph.consumers.get(b_name, [])) != 1:
            continue
        a_init, b_init = graph.inits[a_name], graph.inits[b_name]
        if int(a_init.dims[1]) != 0 or int(b_init.dims[0]) != 0:
            continue
        x = n.input[0]
        if graph.ranks.get(x, 3) != 3:
            raise ValueError(
                f"{graph.src}: the input {x!r} of the LoRA pair {a_name!r} has rank {graph.ranks[x]}; per-row "
                "batching needs a 3-D [batch, seq, in] activation"
            )
        found.append((n, m2, a_name, b_name))
    if not found:
        raise ValueError(
            f"{graph.src}: no LoRA pair MatMul(MatMul(x, A [in, 0]), B [0, out]) with optional inputs A, B "
            "(nor a quantized MatMulNBits pair)"
        )
    return found


def _check_fused(graph: _Graph, found: List[Pair]) -> None:
    """The fused kernel takes float32 pairs whose x·A is not a graph output."""
    from onnx import TensorProto

    for n, _, a_name, b_name in found:
        for name in (a_name, b_name):
            elem = graph.inits[name].data_type
            if elem != TensorProto.FLOAT:
                raise ValueError(
                    f"{graph.src}: the LoRA input {name!r} is {TensorProto.DataType.Name(elem).lower()}; the fused "
                    "kernel needs float32 (use --kernel gather for other dtypes)"
                )
        if n.output[0] in graph.graph_outputs:
            raise ValueError(
                f"{graph.src}: x·A of the LoRA pair {a_name!r} ({n.output[0]!r}) is a graph output; the fused "
                "kernel does not produce it (use --kernel gather)"
            )


def _slot_elem(graph: _Graph, found: List[Pair], kernel: str, lora_dtype: str) -> int:
    """The ONNX element type A and B are declared in: the model's own for ``auto``; the fused kernel also
    takes float16 and bfloat16 slots (the gather kernel's MatMul needs the activation's dtype)."""
    from onnx import TensorProto

    own = graph.inits[found[0][2]].data_type
    if lora_dtype == "auto":
        return int(own)
    elem = {
        "float32": TensorProto.FLOAT,
        "float16": TensorProto.FLOAT16,
        "bfloat16": TensorProto.BFLOAT16,
        "int8": TensorProto.INT8,
    }[lora_dtype]
    if kernel != "fused" and lora_dtype == "int8":
        raise ValueError(f"{graph.src}: --lora-dtype int8 needs --kernel fused (the gather kernel has no int8 slots)")
    if kernel != "fused" and any(graph.inits[name].data_type != elem for _, _, a, b in found for name in (a, b)):
        raise ValueError(
            f"{graph.src}: --lora-dtype {lora_dtype} needs --kernel fused; the gather kernel keeps the model's "
            f"LoRA dtype ({TensorProto.DataType.Name(own).lower()})"
        )
    return int(elem)


def _rewrite_pairs(graph: _Graph, found: List[Pair], kernel: str, slot_elem: int) -> List[str]:
    """Stacked declarations (A and B in ``slot_elem``) and defaults for each pair's A and B (same names), then
    its nodes replaced by the kernel's; returns the A names in graph order."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    g = graph.g
    pair_index = {a: i for i, a in enumerate(sorted(a for _, _, a, _ in found))}
    pairs: List[str] = []
    dropped: set = set()  # intermediate tensors that no longer exist (fused)
    rewritten: Dict[int, List[Any]] = {}  # id(node) -> replacement nodes
    for n, m2, a_name, b_name in found:
        a_init, b_init = graph.inits[a_name], graph.inits[b_name]
        n_in, n_out = int(a_init.dims[0]), int(b_init.dims[1])
        x = n.input[0]
        elem = slot_elem
        prefix = re.sub(r"\.?lora_A.*$", "", a_name) or a_name
        r = "lora_r_" + re.sub(r"[^0-9A-Za-z]+", "_", prefix).strip("_")
        if elem == a_init.data_type:
            dt = helper.tensor_dtype_to_np_dtype(elem)
            a_init.CopyFrom(numpy_helper.from_array(np.zeros((1, n_in, 0), dt), a_name))
            b_init.CopyFrom(numpy_helper.from_array(np.zeros((1, 0, n_out), dt), b_name))
        else:  # empty defaults of the slot dtype (no values to encode)
            a_init.CopyFrom(helper.make_tensor(a_name, elem, [1, n_in, 0], []))
            b_init.CopyFrom(helper.make_tensor(b_name, elem, [1, 0, n_out], []))
        graph.by_name[a_name].CopyFrom(helper.make_tensor_value_info(a_name, elem, [SLOT_DIM, n_in, r]))
        graph.by_name[b_name].CopyFrom(helper.make_tensor_value_info(b_name, elem, [SLOT_DIM, r, n_out]))
        scale_inputs: List[str] = []
        if elem == TensorProto.INT8:
            # The runtime fills these when it writes a slot (adapters do not hold them): A's scales
            # [S, ceil(in/32), R], B's [S, ceil(R/32), out] (op inputs 6, 7).
            a_s, b_s = graph.fresh(a_name + "_scales"), graph.fresh(b_name + "_scales")
            a_blocks = -(-n_in // INT8_BLOCK)
            graph.extra_inputs.append(helper.make_tensor_value_info(a_s, TensorProto.FLOAT, [SLOT_DIM, a_blocks, r]))
            graph.extra_inputs.append(
                helper.make_tensor_value_info(b_s, TensorProto.FLOAT, [SLOT_DIM, r + "_blocks", n_out])
            )
            g.initializer.append(numpy_helper.from_array(np.zeros((1, a_blocks, 0), np.float32), a_s))
            g.initializer.append(numpy_helper.from_array(np.zeros((1, 0, n_out), np.float32), b_s))
            graph.slot_scales[a_name], graph.slot_scales[b_name] = a_s, b_s
            scale_inputs = [a_s, b_s]
        if kernel == "fused":
            inputs, outputs, at = [x, a_name, b_name, SLOT_INPUT, RANKS_INPUT], list(m2.output), n
            add = _lone_add(graph, m2.output[0])
            if add is not None:  # fold the Add: the op adds the LoRA term to the base output itself
                inputs.append(add.input[1] if add.input[0] == m2.output[0] else add.input[0])
                outputs, at = list(add.output), add  # where the Add was: after the base operand's producer
                dropped.add(m2.output[0])
            if scale_inputs:  # int8 slots: inputs 6, 7 (5 = base, "" when there is none)
                inputs += [""] * (6 - len(inputs)) + scale_inputs
            rewritten[id(n)] = rewritten[id(m2)] = []
            rewritten[id(at)] = [
                helper.make_node(
                    OP_TYPE,
                    inputs,
                    outputs,
                    name=graph.fresh(f"{prefix}/lora/{OP_TYPE}"),
                    domain=OP_DOMAIN,
                    pair=pair_index[a_name],
                )
            ]
            dropped.add(n.output[0])
        else:
            ga = graph.fresh(f"{prefix}/lora_A/Gather_output_0")
            gb = graph.fresh(f"{prefix}/lora_B/Gather_output_0")
            rewritten[id(n)] = [
                helper.make_node(
                    "Gather", [a_name, SLOT_INPUT], [ga], name=graph.fresh(f"{prefix}/lora_A/Gather"), axis=0
                ),
                helper.make_node("MatMul", [x, ga], list(n.output), name=n.name),
            ]
            rewritten[id(m2)] = [
                helper.make_node(
                    "Gather", [b_name, SLOT_INPUT], [gb], name=graph.fresh(f"{prefix}/lora_B/Gather"), axis=0
                ),
                helper.make_node("MatMul", [m2.input[0], gb], list(m2.output), name=m2.name),
            ]
        pairs.append(a_name)

    new_nodes: List[Any] = []
    for n in g.node:
        new_nodes.extend(rewritten.get(id(n), [n]))
    del g.node[:]
    g.node.extend(new_nodes)
    if dropped:
        keep = [vi for vi in g.value_info if vi.name not in dropped]
        del g.value_info[:]
        g.value_info.extend(keep)
    return pairs


_QKV_PACKED = (1, 2, 3, 5)  # MatMulNBits inputs concatenated along N: B, scales, zero points, bias (4: g_idx)


class _Uses:
    """Producers and readers of every tensor of a node list (a subgraph's reads count for its node)."""

    def __init__(self, graph: _Graph, nodes: List[Any]) -> None:
        self.graph_outputs = graph.graph_outputs
        self.producer = {o: n for n in nodes for o in n.output if o}
        self.readers: Dict[str, List[int]] = {}
        for n in nodes:
            names = list(n.input) + [i for sub in _subgraphs(n) for sn in sub.node for i in sn.input]
            for i in names:
                self.readers.setdefault(i, []).append(id(n))

    def only_reader(self, name: str, reader: Any) -> bool:
        return name not in self.graph_outputs and self.readers.get(name) == [id(reader)]


def _qkv_part(graph: _Graph, uses: _Uses, name: str, gqa: Any) -> Any:
    """(the pair's LoRA op or None, the projection: a MatMul or a MatMulNBits without g_idx) that produce
    ``name`` for ``gqa`` alone from constant weights, or None."""
    if not name or not uses.only_reader(name, gqa) or name not in uses.producer:
        return None
    op, mm = None, uses.producer[name]
    if mm.op_type == OP_TYPE and mm.domain == OP_DOMAIN:
        if len(mm.input) < 6 or not mm.input[5] or any(a.name == "column_offset" for a in mm.attribute):
            return None
        op = mm
        if not uses.only_reader(op.input[5], op) or op.input[5] not in uses.producer:
            return None
        mm = uses.producer[op.input[5]]
    if _is_matmul(mm):
        w = graph.inits.get(mm.input[1])
        if w is None or len(w.dims) != 2:
            return None
    elif not _is_nbits(mm) or len(mm.input) > 6 or (len(mm.input) > 4 and mm.input[4]):
        return None
    if len(mm.output) != 1 or any(i and (i not in graph.inits or i in graph.by_name) for i in mm.input[1:]):
        return None  # weights must be constants, not graph inputs
    return op, mm


def _qkv_arrays(graph: _Graph, mms: List[Any]) -> Any:
    """(the axis of N, {input index: the three projections' arrays}) when they concatenate along N: one input,
    one op type, the same attributes but N and the same inputs present (MatMulNBits), the same dtypes and
    other dims; else None."""
    from onnx import numpy_helper

    if len({id(mm) for mm in mms}) != 3 or len({mm.input[0] for mm in mms}) != 1:
        return None
    if len({mm.op_type for mm in mms}) != 1:
        return None
    if _is_matmul(mms[0]):
        axis, indices = 1, (1,)
    else:
        attrs = [_nbits_attrs(mm) for mm in mms]
        present = [[bool(i) for i in mm.input[1:]] + [False] * (6 - len(mm.input)) for mm in mms]
        if any("N" not in a for a in attrs) or any(p != present[0] for p in present):
            return None
        if any(
            {k: v for k, v in a.items() if k != "N"} != {k: v for k, v in attrs[0].items() if k != "N"} for a in attrs
        ):
            return None
        axis, indices = 0, tuple(i for i in _QKV_PACKED if i < len(mms[0].input) and mms[0].input[i])
    arrays = {i: [numpy_helper.to_array(graph.inits[mm.input[i]]) for mm in mms] for i in indices}
    for arr in arrays.values():
        if arr[0].ndim <= axis:
            return None
        rest = [a.shape[:axis] + a.shape[axis + 1 :] for a in arr]
        if any(a.dtype != arr[0].dtype or r != rest[0] for a, r in zip(arr, rest)):
            return None
    return axis, arrays


def _packed_qkv_nodes(graph: _Graph, parts: List[Any], axis: int, arrays: Dict[int, Any]) -> Tuple[List[Any], str]:
    """The packed projection (its concatenated weights added to the graph) and the pairs' ops chained over its
    output at their column offsets; returns them and the chain's last output."""
    import numpy as np
    from onnx import helper, numpy_helper

    def packed_name(name: str) -> str:
        return graph.fresh(name.replace("q_proj", "qkv_proj") if "q_proj" in name else name + "_qkv")

    q = parts[0][1]
    widths = [int(w.shape[axis]) if axis == 1 else _nbits_attrs(mm)["N"] for (_, mm), w in zip(parts, arrays[1])]
    inputs = [q.input[0]] + [""] * (len(q.input) - 1)
    for i, arr in arrays.items():
        inputs[i] = packed_name(q.input[i])
        graph.g.initializer.append(numpy_helper.from_array(np.concatenate(arr, axis=axis), inputs[i]))
    cur = packed_name(q.output[0])
    attrs = {} if axis == 1 else {**_nbits_attrs(q), "N": sum(widths)}
    nodes = [helper.make_node(q.op_type, inputs, [cur], name=packed_name(q.name), domain=q.domain, **attrs)]
    offset = 0
    for (op, _), width in zip(parts, widths):
        if op is not None:
            node = helper.make_node(OP_TYPE, list(op.input), [graph.fresh(op.output[0] + "_packed")], name=op.name)
            node.domain = OP_DOMAIN
            node.attribute.extend(op.attribute)
            node.attribute.append(helper.make_attribute("column_offset", offset))
            node.input[5] = cur
            nodes.append(node)
            cur = node.output[0]
        offset += width
    return nodes, cur


def _pack_qkv(graph: _Graph) -> int:
    """Packs the q/k/v projections of each GroupQueryAttention into one (module docstring); returns how many
    attentions were packed. An attention is left alone unless all three projections qualify."""
    g = graph.g
    nodes = list(g.node)
    uses = _Uses(graph, nodes)
    replaced: Dict[int, List[Any]] = {}
    gone: set = set()  # tensors that no longer exist
    for gqa in nodes:
        if gqa.op_type != "GroupQueryAttention" or gqa.domain != "com.microsoft" or len(gqa.input) < 3:
            continue
        parts = [_qkv_part(graph, uses, name, gqa) for name in gqa.input[:3]]
        if any(p is None for p in parts):
            continue
        packing = _qkv_arrays(graph, [mm for _, mm in parts])
        if packing is None:
            continue
        new_nodes, last = _packed_qkv_nodes(graph, parts, *packing)
        gqa.input[0], gqa.input[1], gqa.input[2] = last, "", ""
        removed = [n for part in parts for n in part if n is not None]
        gone.update(n.output[0] for n in removed)
        for n in removed:
            replaced[id(n)] = []
        replaced[id(nodes[min(nodes.index(n) for n in removed)])] = new_nodes
    if not replaced:
        return 0
    new_list = [m for n in nodes for m in replaced.get(id(n), [n])]
    del g.node[:]
    g.node.extend(new_list)
    used = set(_Uses(graph, new_list).readers) | graph.graph_outputs
    inits = [t for t in g.initializer if t.name in used or t.name in graph.by_name]
    del g.initializer[:]
    g.initializer.extend(inits)
    graph.inits = {t.name: t for t in inits}
    values = [v for v in g.value_info if v.name not in gone]
    del g.value_info[:]
    g.value_info.extend(values)
    return sum(1 for n in replaced.values() if n)


def _add_slot_inputs(graph: _Graph, pair_count: int, kernel: str) -> None:
    """The inputs the runtime feeds (lora_slot, and lora_ranks for the fused kernel), the op domain, the kernel
    recorded in the metadata, IR >= 4."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    model, g = graph.model, graph.g
    del g.input[:]
    g.input.extend(graph.inputs)
    g.input.extend(graph.extra_inputs)
    g.input.append(helper.make_tensor_value_info(SLOT_INPUT, TensorProto.INT64, ["lora_batch"]))
    g.initializer.append(numpy_helper.from_array(np.zeros((1,), np.int64), SLOT_INPUT))
    if kernel == "fused":
        g.input.append(helper.make_tensor_value_info(RANKS_INPUT, TensorProto.INT64, [pair_count, SLOT_DIM]))
        g.initializer.append(numpy_helper.from_array(np.zeros((pair_count, 1), np.int64), RANKS_INPUT))
        if not any(o.domain == OP_DOMAIN for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(OP_DOMAIN, 1))
    _set_metadata(model, KERNEL_METADATA_KEY, kernel)
    if graph.dequant:
        import json

        model.metadata_props.add(key=DEQUANT_METADATA_KEY, value=json.dumps(graph.dequant, sort_keys=True))
    if graph.slot_scales:
        import json

        model.metadata_props.add(key=SLOT_SCALES_METADATA_KEY, value=json.dumps(graph.slot_scales, sort_keys=True))
    # Gather needs opset >= 1 and batched MatMul opset >= 1: any opset works; IR >= 4 keeps inputs optional.
    if model.ir_version < 4:
        model.ir_version = 4


def _set_metadata(model: Any, key: str, value: str) -> None:
    """Sets the model's metadata entry ``key`` (replacing its value if the model has one)."""
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    model.metadata_props.add(key=key, value=value)


def _save(model: Any, out: str) -> None:
    import onnx

    if model.ByteSize() < 1_800_000_000:  # protobuf's 2 GiB limit: large models keep their weights outside
        _check(model)
        onnx.save(model, out)
    else:
        onnx.save(model, out, save_as_external_data=True, location=os.path.basename(out) + ".data")
        _check(out)


def _lone_add(graph: _Graph, delta: str) -> Any:
    """The standard two-operand Add that is the only reader of a pair's output ``delta`` (no graph output),
    i.e. ``y = base + delta``; None when the graph uses the output otherwise."""
    users = graph.consumers.get(delta, [])
    if delta in graph.graph_outputs or len(users) != 1:
        return None
    add = users[0]
    if (
        add.op_type != "Add"
        or add.domain not in ("", "ai.onnx")
        or len(add.input) != 2
        or add.input[0] == add.input[1]
        or len(add.output) != 1
    ):
        return None
    return add


def _check_deltas(graph: _Graph, deltas: List[str]) -> None:
    """Each pair's output must be consumed by exactly one Add (and be no graph output): the base graph
    replaces that Add (or the fused op that took it in) by its base operand."""
    for d in deltas:
        if _lone_add(graph, d) is None:
            raise ValueError(
                f"{graph.src}: the LoRA output {d!r} is not added to the base output by one Add node, so no base "
                "graph can be derived (use --no-base-graph)"
            )


def _strip_lora(model: Any, deltas: List[str], lora_name: str) -> Any:
    """A copy of the prepared ``model`` (weights already external) without the LoRA branch: every Add of a
    pair's output (and every fused op with a ``base`` operand) is removed and its base operand renamed to its
    output where that is a graph output, else consumers read the base operand directly; then nodes, inputs and
    initializers nothing uses go."""
    import onnx

    base = onnx.ModelProto()
    base.CopyFrom(model)
    g = base.graph
    delta_set = set(deltas)
    rename: Dict[str, str] = {}  # Add output -> its base operand
    graph_outputs = {o.name for o in g.output}
    keep_nodes: List[Any] = []
    identities: List[Any] = []
    for n in g.node:
        if n.op_type == OP_TYPE and n.domain == OP_DOMAIN and len(n.input) > 5 and n.input[5]:
            other = n.input[5]  # a fused op that took in its pair's Add: y = base + LoRA term
        else:
            hit = [i for i in n.input if i in delta_set] if n.op_type == "Add" else []
            if not hit:
                keep_nodes.append(n)
                continue
            other = n.input[1] if n.input[0] == hit[0] else n.input[0]
        if n.output[0] in graph_outputs:
            identities.append(onnx.helper.make_node("Identity", [other], [n.output[0]], name=n.name))
        else:
            rename[n.output[0]] = other

    def resolve(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    def fix(nodes: Any) -> None:  # also outer-scope names used inside If/Loop/Scan bodies
        for node in nodes:
            for i, name in enumerate(node.input):
                node.input[i] = resolve(name)
            for sub in _subgraphs(node):
                fix(sub.node)

    def uses(nodes: Any, out: set) -> None:
        for node in nodes:
            out.update(node.input)
            for sub in _subgraphs(node):
                uses(sub.node, out)

    nodes = keep_nodes + identities
    fix(nodes)
    # Dead code: the LoRA MatMuls / fused nodes, their gathers, anything only they used.
    while True:
        used = set(graph_outputs)
        uses(nodes, used)
        alive = [n for n in nodes if any(o in used for o in n.output if o)]
        if len(alive) == len(nodes):
            break
        nodes = alive
    del g.node[:]
    g.node.extend(nodes)
    inputs = [i for i in g.input if i.name in used]
    del g.input[:]
    g.input.extend(inputs)
    inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    produced = {o for n in nodes for o in n.output}
    values = [v for v in g.value_info if v.name in produced]
    del g.value_info[:]
    g.value_info.extend(values)
    if not any(n.domain == OP_DOMAIN for n in nodes):
        opsets = [o for o in base.opset_import if o.domain != OP_DOMAIN]
        del base.opset_import[:]
        base.opset_import.extend(opsets)
    dropped_keys = (KERNEL_METADATA_KEY, BASE_GRAPH_METADATA_KEY, SLOT_SCALES_METADATA_KEY)
    props = [p for p in base.metadata_props if p.key not in dropped_keys]
    del base.metadata_props[:]
    base.metadata_props.extend(props)
    base.metadata_props.add(key=BASE_GRAPH_OF_METADATA_KEY, value=lora_name)
    return base


def _externalize(model: Any, folder: str, location: str) -> None:
    """Moves every initializer of ``_EXTERNAL_MIN_BYTES`` or more (raw data) of the main graph into
    ``folder/location``, page-aligned, and points the tensors at it."""
    from onnx import TensorProto

    path = os.path.join(folder, location)
    with open(path, "wb") as f:
        offset = 0
        for t in model.graph.initializer:
            if t.data_location == TensorProto.EXTERNAL or not t.HasField("raw_data"):
                continue
            size = len(t.raw_data)
            if size < _EXTERNAL_MIN_BYTES:
                continue
            pad = (-offset) % _EXTERNAL_ALIGN
            if pad:
                f.write(b"\0" * pad)
                offset += pad
            f.write(t.raw_data)
            t.ClearField("raw_data")
            del t.external_data[:]
            for k, v in (("location", location), ("offset", str(offset)), ("length", str(size))):
                e = t.external_data.add()
                e.key, e.value = k, v
            t.data_location = TensorProto.EXTERNAL
            offset += size


def _save_with_base(model: Any, out: str, deltas: List[str]) -> None:
    """The prepared model and its base graph, both over one external data file ``<out name>.data``."""
    import onnx

    folder = os.path.dirname(os.path.abspath(out))
    name = os.path.basename(out)
    base_name = base_graph_name(name)
    if model.ByteSize() < 1_800_000_000:
        _check(model)
    _externalize(model, folder, name + ".data")
    _set_metadata(model, BASE_GRAPH_METADATA_KEY, base_name)
    base = _strip_lora(model, deltas, name)
    onnx.save(model, out)
    onnx.save(base, os.path.join(folder, base_name))
    _check(os.path.join(folder, base_name))


_UNKNOWN_DOMAIN = "multilora.unchecked"


def _check(m: Any) -> None:
    """The onnx checker over the whole model. Ops it has no schema for (onnxruntime contrib ops in the default
    domain, such as SimplifiedLayerNormalization in GenAI builder models, and our com.multilora op) are not
    checked; everything else is, including the nodes after them."""
    import onnx

    if isinstance(m, str):  # too large to copy in memory: the checker stops at the first unknown op
        try:
            onnx.checker.check_model(m)
        except onnx.checker.ValidationError as e:
            if "No Op registered" not in str(e):
                raise
        return
    copy = onnx.ModelProto()
    copy.CopyFrom(m)
    moved = False

    def move_unknown(graph: Any) -> None:
        nonlocal moved
        for node in graph.node:
            if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type):
                node.domain = _UNKNOWN_DOMAIN  # the checker skips nodes of domains it does not know
                moved = True
            for sub in _subgraphs(node):
                move_unknown(sub)

    move_unknown(copy.graph)
    if moved:
        copy.opset_import.append(onnx.helper.make_opsetid(_UNKNOWN_DOMAIN, 1))
    onnx.checker.check_model(copy)


def _run(args: Any) -> int:
    import sys

    try:
        pairs = prepare_batching(
            args.input, args.output, kernel=args.kernel, base_graph=args.base_graph, lora_dtype=args.lora_dtype
        )
    except (OSError, ValueError) as e:
        print(f"multilora prepare-batching: {e}", file=sys.stderr)
        return 1
    slots = "" if args.lora_dtype == "auto" else f", {args.lora_dtype} slots"
    how = (
        f"fused {OP_DOMAIN}.{OP_TYPE} nodes{slots}; inputs {SLOT_INPUT!r} and {RANKS_INPUT!r}"
        if args.kernel == "fused"
        else f"Gather + batched MatMul; input {SLOT_INPUT!r}"
    )
    print(f"wrote {args.output}: {len(pairs)} LoRA pairs stacked ({how} select each row's slot)")
    if args.base_graph:
        print(
            "  and its base graph <name>.base.onnx beside it (no LoRA branch; runs when no row has an adapter), "
            "both over one external data file <name>.data"
        )
    return 0


def add_prepare_batching_command(subparsers: Any) -> None:
    """Adds ``prepare-batching`` to an argparse sub-parsers object."""
    p = subparsers.add_parser(
        "prepare-batching",
        help="rewrite a LoRA-enabled model for per-row adapters in one Run (needs the onnx package)",
        description="Stack every LoRA pair's inputs (A [S, in, R], B [S, R, out]) and add the int64 input "
        "'lora_slot' [batch] selecting each row's slot; the base output is unchanged when nothing is fed. "
        "--kernel fused (default, float32) replaces each pair by multilora's com.multilora.LoraSlotMatMul op "
        "(plus the int64 input 'lora_ranks' [pairs, S]); the result runs only with multilora. --kernel gather "
        "uses standard ONNX Gather + batched MatMul (any dtype, slower). --lora-dtype float16/bfloat16 stores "
        "the fused kernel's slots in half precision (half the adapter bytes per step; float32 adapters are "
        "rounded to it when loaded, float16/bfloat16 ones kept exactly); --lora-dtype int8 stores them as int8 "
        "with a float32 scale per block of 32 rows (~0.3x the float32 bytes; float adapters quantized when a set "
        "is built, lossy; int4 adapters held exactly).",
    )
    p.add_argument("input", help="a LoRA-enabled .onnx model, or a GenAI model folder (genai_config.json)")
    p.add_argument(
        "output",
        help="the .onnx file to write; for a folder, a new or empty folder that receives the rewritten decoder "
        "and a copy of every other file (genai_config.json, tokenizer, adapters)",
    )
    p.add_argument(
        "--kernel",
        choices=KERNELS,
        default="fused",
        help="how each pair applies its row's slot: fused (multilora's kernel, float32; default) or gather "
        "(standard ONNX)",
    )
    p.add_argument(
        "--no-base-graph",
        dest="base_graph",
        action="store_false",
        help="do not write the companion graph without the LoRA branch (by default it is written beside the "
        "output as <name>.base.onnx, sharing one external data file, and runs whenever no row has an adapter)",
    )
    p.add_argument(
        "--lora-dtype",
        choices=LORA_DTYPES,
        default="auto",
        help="dtype of the fused kernel's adapter slots: auto (the model's LoRA dtype, float32), float16 or "
        "bfloat16 (16-bit slots, widened to float32 in the kernel; float32 adapters are rounded on load), int8 "
        "(block-scaled int8 slots, opt-in: float adapters quantized per 32-row block when a set is built, lossy; "
        "int4 adapters exact)",
    )
    p.set_defaults(func=_run)
