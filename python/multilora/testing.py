"""Seeded builders of small LoRA-enabled ONNX models and adapters, plus a numpy reference forward.

Used by the tests, the demo and the benchmarks. The network is a small decoder-style stack so the
numbers mean something: token embedding, then per layer a pre-norm single-head causal attention block
(``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``) and a pre-norm ReLU MLP (``up_proj``, ``down_proj``),
each with a residual connection, then a final norm and an ``lm_head`` giving ``logits``. Every
adapted projection is ``y = x·W + (x·A)·B`` where ``A`` and ``B`` are optional graph inputs named
like onnxruntime-genai's model builder does::

    model.layers.{i}.attn.{m}.lora_A.MatMul.weight   [in, "lora_r"]  (default [in, 0])
    model.layers.{i}.attn.{m}.lora_B.MatMul.weight   ["lora_r", out] (default [0, out])

(``mlp`` instead of ``attn`` for ``up_proj``/``down_proj``). Building models needs the ``onnx``
package (a test extra); nothing here is needed to serve adapters.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "ATTN_MODULES",
    "MLP_MODULES",
    "LoraModel",
    "LoraPair",
    "make_lora_model",
    "make_adapter_params",
    "make_input_ids",
    "reference_forward",
    "composite_params",
    "write_ort_adapter",
    "shift_logits_folder",
    "run_export_tool",
    "genai_builder_command",
    "olive_generate_adapter_command",
]

ATTN_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("up_proj", "down_proj")
_ALL_MODULES = ATTN_MODULES + MLP_MODULES
_LN_EPS = 1e-5

PathLike = Union[str, "os.PathLike[str]"]
ParamDict = Dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class LoraPair:
    """One adapted projection: its base weight and the names of its two LoRA inputs."""

    layer: int
    module: str
    weight: str  # name of the base weight initializer [in, out]
    a_name: str  # LoRA A input [in, r]
    b_name: str  # LoRA B input [r, out]
    in_features: int
    out_features: int


@dataclasses.dataclass(frozen=True)
class LoraModel:
    """What :func:`make_lora_model` wrote: enough to build adapters and compute the reference."""

    path: str
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    modules: Tuple[str, ...]
    dtype: np.dtype
    seed: int
    weights: Mapping[str, np.ndarray]  # every base initializer, by name
    pairs: Tuple[LoraPair, ...]  # adapted projections in graph order

    @property
    def lora_names(self) -> List[str]:
        """Every LoRA input name, in model input order (A then B per projection)."""
        return [n for p in self.pairs for n in (p.a_name, p.b_name)]


def _group(module: str) -> str:
    return "mlp" if module in MLP_MODULES else "attn"


def _prefix(layer: int, module: str) -> str:
    return f"model.layers.{layer}.{_group(module)}.{module}"


# long: one seeded graph written top to bottom; its small builders are closures over the lists being filled, and a
# split would only pass those lists around.
def make_lora_model(
    path: PathLike,
    layers: int = 2,
    hidden: int = 16,
    modules: Sequence[str] = ("q_proj", "v_proj"),
    seed: int = 0,
    dtype: np.typing.DTypeLike = np.float32,
    duplicate_inputs: bool = False,
    vocab: int = 32,
    intermediate: Optional[int] = None,
    opset: int = 17,
    rank_dim: str = "lora_r",
) -> LoraModel:
    """Writes a seeded LoRA-enabled model to ``path`` and returns its description.

    Inputs: ``input_ids`` int64 [batch, seq]. Output: ``logits`` ``dtype`` [batch, seq, vocab].
    ``modules`` picks the adapted projections among q/k/v/o_proj, up/down_proj (every layer).
    ``dtype`` is float32 or float16 (weights, activations and LoRA inputs alike).
    ``duplicate_inputs`` lists every LoRA input twice in graph.input, as some exporters do.
    ``rank_dim`` is the symbolic name of the rank axis; it may use ``{layer}`` and ``{module}`` to give
    each projection its own (one shared name, as model builders write, makes ONNX Runtime's memory
    planner assume every LoRA input has the same rank).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise ValueError(f"make_lora_model: dtype must be float32 or float16, not {dt}")
    unknown = [m for m in modules if m not in _ALL_MODULES]
    if unknown:
        raise ValueError(f"make_lora_model: unknown modules {unknown}; known: {list(_ALL_MODULES)}")
    elem = TensorProto.FLOAT if dt == np.float32 else TensorProto.FLOAT16
    inter = intermediate if intermediate is not None else 2 * hidden
    rng = np.random.default_rng(seed)

    weights: Dict[str, np.ndarray] = {}
    nodes: List[onnx.NodeProto] = []
    inits: List[onnx.TensorProto] = []
    lora_inputs: List[onnx.ValueInfoProto] = []
    pairs: List[LoraPair] = []

    def init(name: str, value: np.ndarray) -> str:
        value = np.ascontiguousarray(value.astype(dt))
        weights[name] = value
        inits.append(numpy_helper.from_array(value, name))
        return name

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, ins: Sequence[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, list(ins), [out], name=out, **attrs))
        return out

    def dense(x: str, layer: int, module: str, n_in: int, n_out: int) -> str:
        pre = _prefix(layer, module)
        w = init(f"{pre}.MatMul.weight", rng.standard_normal((n_in, n_out)) / np.sqrt(n_in))
        y = node("MatMul", [x, w], f"{pre}/MatMul")
        if module not in modules:
            return y
        a_name, b_name = f"{pre}.lora_A.MatMul.weight", f"{pre}.lora_B.MatMul.weight"
        inits.append(numpy_helper.from_array(np.zeros((n_in, 0), dt), a_name))
        inits.append(numpy_helper.from_array(np.zeros((0, n_out), dt), b_name))
        r = rank_dim.format(layer=layer, module=module)
        lora_inputs.append(helper.make_tensor_value_info(a_name, elem, [n_in, r]))
        lora_inputs.append(helper.make_tensor_value_info(b_name, elem, [r, n_out]))
        pairs.append(LoraPair(layer, module, w, a_name, b_name, n_in, n_out))
        xa = node("MatMul", [x, a_name], f"{pre}/lora_A/MatMul")
        xab = node("MatMul", [xa, b_name], f"{pre}/lora_B/MatMul")
        return node("Add", [y, xab], f"{pre}/lora/Add")

    def norm(x: str, name: str) -> str:
        g = init(f"{name}.weight", 1.0 + 0.1 * rng.standard_normal(hidden))
        b = init(f"{name}.bias", 0.1 * rng.standard_normal(hidden))
        return node("LayerNormalization", [x, g, b], f"{name}/LayerNorm", axis=-1, epsilon=_LN_EPS)

    embed = init("model.embed_tokens.weight", rng.standard_normal((vocab, hidden)))
    h = node("Gather", [embed, "input_ids"], "model/embed/Gather", axis=0)
    inv_sqrt = const("model/attn_scale", np.array(1.0 / np.sqrt(hidden), dt))
    neg_big = const("model/mask_value", np.array(-1e4 if dt == np.float16 else -1e9, dt))
    one = const("model/one", np.array(1.0, dt))
    for i in range(layers):
        p = f"model.layers.{i}"
        n1 = norm(h, f"{p}.input_layernorm")
        q = dense(n1, i, "q_proj", hidden, hidden)
        k = dense(n1, i, "k_proj", hidden, hidden)
        v = dense(n1, i, "v_proj", hidden, hidden)
        kt = node("Transpose", [k], f"{p}/attn/kT", perm=[0, 2, 1])
        s = node("MatMul", [q, kt], f"{p}/attn/scores")
        s = node("Mul", [s, inv_sqrt], f"{p}/attn/scaled")
        # causal mask: keep the lower triangle, push the rest to a large negative value
        ones = node("Shape", [s], f"{p}/attn/shape")
        ones = node("ConstantOfShape", [ones], f"{p}/attn/ones", value=helper.make_tensor("v", elem, [1], [1.0]))
        tril = node("Trilu", [ones], f"{p}/attn/tril", upper=0)
        off = node("Sub", [one, tril], f"{p}/attn/above")
        off = node("Mul", [off, neg_big], f"{p}/attn/mask")
        s = node("Add", [s, off], f"{p}/attn/masked")
        pr = node("Softmax", [s], f"{p}/attn/probs", axis=-1)
        att = node("MatMul", [pr, v], f"{p}/attn/context")
        o = dense(att, i, "o_proj", hidden, hidden)
        h = node("Add", [h, o], f"{p}/attn/residual")
        n2 = norm(h, f"{p}.post_attention_layernorm")
        up = dense(n2, i, "up_proj", hidden, inter)
        act = node("Relu", [up], f"{p}/mlp/act")
        down = dense(act, i, "down_proj", inter, hidden)
        h = node("Add", [h, down], f"{p}/mlp/residual")
    nf = norm(h, "model.norm")
    lm = init("lm_head.MatMul.weight", rng.standard_normal((hidden, vocab)) / np.sqrt(hidden))
    node("MatMul", [nf, lm], "logits")

    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"])]
    inputs += lora_inputs
    if duplicate_inputs:
        inputs += lora_inputs
    outputs = [helper.make_tensor_value_info("logits", elem, ["batch_size", "sequence_length", vocab])]
    graph = helper.make_graph(nodes, "multilora_test_model", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="multilora.testing")
    model.ir_version = 8
    if not duplicate_inputs:
        onnx.checker.check_model(model)
    path = os.fspath(path)
    onnx.save(model, path)
    return LoraModel(
        path=path,
        layers=layers,
        hidden=hidden,
        intermediate=inter,
        vocab=vocab,
        modules=tuple(modules),
        dtype=dt,
        seed=seed,
        weights=weights,
        pairs=tuple(pairs),
    )


def make_adapter_params(
    model_info: LoraModel,
    rank: int,
    seed: int,
    modules: Optional[Iterable[str]] = None,
    layers: Optional[Iterable[int]] = None,
    dtype: Optional[np.typing.DTypeLike] = None,
) -> ParamDict:
    """Seeded adapter parameters {name: array} for the model's LoRA inputs.

    A is [in, rank], B is [rank, out] (scale already folded into B), in the model's dtype unless
    ``dtype`` is given. ``modules``/``layers`` restrict which projections the adapter touches.
    """
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype) if dtype is not None else model_info.dtype
    mods = set(modules) if modules is not None else None
    lays = set(layers) if layers is not None else None
    out: ParamDict = {}
    for p in model_info.pairs:
        if (mods is not None and p.module not in mods) or (lays is not None and p.layer not in lays):
            continue
        a = rng.standard_normal((p.in_features, rank)) / np.sqrt(p.in_features)
        b = rng.standard_normal((rank, p.out_features)) * (0.5 / np.sqrt(max(rank, 1)))
        out[p.a_name] = np.ascontiguousarray(a.astype(dt))
        out[p.b_name] = np.ascontiguousarray(b.astype(dt))
    return out


def make_input_ids(model_info: LoraModel, batch: int = 2, seq: int = 5, seed: int = 0) -> np.ndarray:
    """Seeded token ids int64 [batch, seq] within the model's vocabulary."""
    return np.random.default_rng(seed).integers(0, model_info.vocab, size=(batch, seq), dtype=np.int64)


def composite_params(params_list_with_weights: Sequence[Tuple[Mapping[str, np.ndarray], float]]) -> ParamDict:
    """The single adapter equal to a weighted sum of adapters, built the way the design says.

    Parameters touched by one adapter are taken as they are (B times its weight); parameters touched
    by several are concatenated along the rank axis: A = [A1 A2], B = [w1·B1; w2·B2].
    """
    a_parts: Dict[str, List[np.ndarray]] = {}
    b_parts: Dict[str, List[np.ndarray]] = {}
    for params, w in params_list_with_weights:
        for name, value in params.items():
            if "lora_A" in name:
                a_parts.setdefault(name, []).append(np.asarray(value))
            elif "lora_B" in name:
                v = np.asarray(value)
                b_parts.setdefault(name, []).append((v.astype(np.float64) * w).astype(v.dtype))
            else:
                raise ValueError(f"composite_params: {name!r} is neither a lora_A nor a lora_B parameter")
    out: ParamDict = {}
    for name, parts in a_parts.items():
        out[name] = np.ascontiguousarray(np.concatenate(parts, axis=1))
    for name, parts in b_parts.items():
        out[name] = np.ascontiguousarray(np.concatenate(parts, axis=0))
    return out


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    out: np.ndarray = (x - mu) / np.sqrt(var + _LN_EPS) * g + b
    return out


def reference_forward(
    weights: Union[LoraModel, Mapping[str, np.ndarray]],
    x: np.ndarray,
    params_list_with_weights: Sequence[Tuple[Mapping[str, np.ndarray], float]] = (),
) -> np.ndarray:
    """The model's logits computed with numpy in float64: the independent reference.

    ``weights`` is the :class:`LoraModel` (or its ``weights`` mapping), ``x`` the int64 input_ids
    [batch, seq], ``params_list_with_weights`` a sequence of (adapter params, weight): each adapted
    projection adds the weighted sum of its adapters' deltas ``w·(x·A)·B``. Returns float64
    [batch, seq, vocab].
    """
    w = weights.weights if isinstance(weights, LoraModel) else weights
    W = {k: np.asarray(v, dtype=np.float64) for k, v in w.items()}
    adapters = [
        ({k: np.asarray(v, dtype=np.float64) for k, v in p.items()}, float(s)) for p, s in params_list_with_weights
    ]
    n_layers = 0
    while f"model.layers.{n_layers}.input_layernorm.weight" in W:
        n_layers += 1
    hidden = W["model.embed_tokens.weight"].shape[1]

    def dense(v: np.ndarray, layer: int, module: str) -> np.ndarray:
        pre = _prefix(layer, module)
        y = v @ W[f"{pre}.MatMul.weight"]
        a_name, b_name = f"{pre}.lora_A.MatMul.weight", f"{pre}.lora_B.MatMul.weight"
        for params, s in adapters:
            if a_name in params or b_name in params:
                y = y + s * ((v @ params[a_name]) @ params[b_name])
        return y

    ids = np.asarray(x, dtype=np.int64)
    h = W["model.embed_tokens.weight"][ids]
    seq = ids.shape[-1]
    mask = np.where(np.tril(np.ones((seq, seq))) > 0, 0.0, -np.inf)
    for i in range(n_layers):
        p = f"model.layers.{i}"
        n1 = _layer_norm(h, W[f"{p}.input_layernorm.weight"], W[f"{p}.input_layernorm.bias"])
        q, k, v = (dense(n1, i, m) for m in ("q_proj", "k_proj", "v_proj"))
        s = q @ np.swapaxes(k, -1, -2) / np.sqrt(hidden) + mask
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        pr = s / s.sum(axis=-1, keepdims=True)
        h = h + dense(pr @ v, i, "o_proj")
        n2 = _layer_norm(h, W[f"{p}.post_attention_layernorm.weight"], W[f"{p}.post_attention_layernorm.bias"])
        h = h + dense(np.maximum(dense(n2, i, "up_proj"), 0.0), i, "down_proj")
    nf = _layer_norm(h, W["model.norm.weight"], W["model.norm.bias"])
    return nf @ W["lm_head.MatMul.weight"]


def write_ort_adapter(
    path: PathLike,
    params: Mapping[str, np.ndarray],
    adapter_version: int = 0,
    model_version: int = 0,
    dtypes: Optional[Mapping[str, str]] = None,
) -> None:
    """Writes an .onnx_adapter file with onnxruntime's own writer (``onnxruntime.AdapterFormat``).

    ``dtypes`` may name a parameter "bfloat16" to write its uint16 array as raw bfloat16 bits; arrays of
    ml_dtypes.bfloat16 are recognised by themselves.
    """
    import onnxruntime as ort

    values = {}
    for name, value in params.items():
        arr = np.ascontiguousarray(value)
        if (dtypes or {}).get(name) == "bfloat16" or arr.dtype.name == "bfloat16":
            values[name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(arr.view(np.uint16), 16)
        else:
            values[name] = ort.OrtValue.ortvalue_from_numpy(arr)
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(adapter_version)
    fmt.set_model_version(model_version)
    fmt.set_parameters(values)
    fmt.export_adapter(os.fspath(path))


def shift_logits_folder(src: PathLike, dst: PathLike, shift: float = 100.0) -> str:
    """Copies the GenAI model folder ``src`` to ``dst`` with the decoder's logits lowered by ``shift``
    (a Sub node after the LM head). Greedy choices and softmax are unchanged; every logit of a small seeded
    model becomes negative, which is what a repetition-penalty test needs (GenAI's rule multiplies a negative
    logit of a seen token by the penalty and divides a positive one). Returns ``dst``."""
    import json
    import shutil

    import onnx
    from onnx import helper, numpy_helper

    src, dst = os.fspath(src), os.fspath(dst)
    shutil.copytree(src, dst)
    with open(os.path.join(dst, "genai_config.json"), encoding="utf-8") as f:
        decoder = json.load(f)["model"]["decoder"]
    fname = decoder["filename"]
    logits = decoder.get("outputs", {}).get("logits", "logits")
    model = onnx.load(os.path.join(src, fname))  # with its external data
    raw = logits + "_unshifted"
    for node in model.graph.node:
        node.output[:] = [raw if o == logits else o for o in node.output]
    elem = next(o.type.tensor_type.elem_type for o in model.graph.output if o.name == logits)
    np_dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
    model.graph.initializer.append(numpy_helper.from_array(np.array(shift, dtype=np_dtype), raw + "_shift"))
    model.graph.node.append(helper.make_node("Sub", [raw, raw + "_shift"], [logits], name="shift_logits"))
    for f in os.listdir(dst):
        if f.startswith(fname) and f != fname:
            os.remove(os.path.join(dst, f))  # external data is written inline below
    onnx.save(model, os.path.join(dst, fname))
    return dst


# ---- the real export tools (fixture, benchmark and demo builders) ------------------------------------------


def run_export_tool(cmd: Sequence[Any], cwd: PathLike, log: Callable[[str], None] = print) -> float:
    """Runs one step of the ONNX Runtime GenAI builder / Olive export (``cmd``: argv, items made str) in ``cwd``
    offline and quiet, and returns its wall time in seconds; on failure prints its output and raises
    SystemExit. ``GIT_DIR`` points nowhere: the GenAI builder stamps ``producer_version`` with ``git rev-parse
    HEAD`` run near its own files, which inside this repository's .venv is our commit (exports would change
    with every commit)."""
    import subprocess
    import sys
    import time

    argv = [str(c) for c in cmd]
    log(" ".join(argv))
    env = dict(os.environ, TQDM_DISABLE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GIT_DIR=os.devnull)
    t0 = time.perf_counter()
    res = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stdout)
        raise SystemExit(f"command failed ({res.returncode}): {' '.join(argv)}")
    return time.perf_counter() - t0


def genai_builder_command(
    hf_dir: PathLike,
    out_dir: PathLike,
    precision: str = "fp32",
    cache_dir: Optional[PathLike] = None,
    extra_options: Sequence[str] = (),
) -> List[str]:
    """ONNX Runtime GenAI's model builder through the running interpreter, for the CPU: ``hf_dir`` (a
    transformers model folder) to a GenAI folder ``out_dir`` at ``precision`` (``-p``); ``extra_options`` are
    ``key=value`` items (``adapter_path=...`` bakes a PEFT adapter into LoRA MatMuls)."""
    import sys

    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", os.fspath(hf_dir), "-o", os.fspath(out_dir)]
    cmd += ["-p", precision, "-e", "cpu"]
    if cache_dir is not None:
        cmd += ["-c", os.fspath(cache_dir)]
    if extra_options:
        cmd += ["--extra_options", *extra_options]
    return cmd


def olive_generate_adapter_command(model_dir: PathLike, out_dir: PathLike) -> List[str]:
    """``olive generate-adapter`` through the running interpreter (nothing has to be on PATH): the LoRA
    MatMuls of a GenAI builder model become optional inputs, the weights an .onnx_adapter file."""
    import sys

    return [
        sys.executable,
        "-m",
        "olive",
        "generate-adapter",
        "-m",
        os.fspath(model_dir),
        "-o",
        os.fspath(out_dir),
        "--adapter_format",
        "onnx_adapter",
        "--log_level",
        "3",
        "--disable_telemetry",
    ]
