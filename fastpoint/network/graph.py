"""Reading an ONNX model into fastpoint's own small graph, and the load-time passes on it.

Only this module imports ``onnx``. The graph keeps, per node, the op object built by the registry
(which has checked every attribute), the input and output value names ("" for an omitted optional
input), and the initializers as NumPy arrays. Two load-time passes need no input shape:

* BatchNormalization after a Conv whose output nothing else reads is folded into the Conv's weight
  and bias, in float64 (``W' = W * k``, ``b' = (b - mean) * k + beta``, ``k = gamma / sqrt(var + eps)``),
  rounded once to the weight's dtype;
* a Relu after a Conv (same condition) becomes the Conv's fused activation.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from . import wire  # (imported with the package: its classes cost ~1 ms to make on a first load)
from .registry import Op, op_class

Dim = Union[int, str]


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: its name, shape (a free dimension is its name, or "?") and dtype."""

    name: str
    shape: Optional[Tuple[Dim, ...]]
    dtype: Optional[np.dtype]


@dataclass
class Node:
    op: Op
    inputs: List[str]
    outputs: List[str]

    @property
    def name(self) -> str:
        return self.op.name


@dataclass
class Graph:
    nodes: List[Node]
    initializers: Dict[str, np.ndarray]
    inputs: List[TensorInfo]
    outputs: List[TensorInfo]
    opset: int
    notes: List[str] = field(default_factory=list)


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("fastpoint.load_onnx needs the onnx package: pip install 'fastpoint[onnx]' "
                          "(or pip install onnx)") from None
    return onnx


def load_model(model):
    """``model`` as an ``onnx.ModelProto`` (from a path, bytes or a ModelProto)."""
    onnx = _import_onnx()
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray, memoryview)):
        return onnx.load_model_from_string(bytes(model))
    if isinstance(model, (str, os.PathLike)):
        return onnx.load(os.fspath(model))
    raise TypeError(f"model must be a path, bytes or an onnx.ModelProto, got {type(model).__name__}")


def read(model):
    """``(ModelProto, {initializer name: array} read by the fast path, initializer order)``.

    A path or bytes goes through :mod:`.wire` (each plain initializer read once into an aligned array);
    a ModelProto, or a file the fast path does not take, through ``onnx`` alone (``({}, None)``).
    """
    onnx = _import_onnx()
    if isinstance(model, (str, os.PathLike, bytes, bytearray, memoryview)) \
            and not isinstance(model, onnx.ModelProto):
        got = wire.read_path(model) if isinstance(model, (str, os.PathLike)) else wire.read_bytes(bytes(model))
        if got is not None:
            stripped, arrays, order = got
            proto = onnx.load_model_from_string(stripped)
            if isinstance(model, (str, os.PathLike)) and any(
                    onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer):
                onnx.load_external_data_for_model(proto, os.path.dirname(os.fspath(model)) or ".")
            return proto, arrays, order
    return load_model(model), {}, None


def read_deferred(model):
    """:func:`read` leaving the convolution weights in the file: ``(ModelProto, arrays, order, deferred)``.

    For a model whose inputs all have fixed shapes (so ``load_onnx`` plans and packs it before it
    returns), each plain float initializer read by one Conv node alone, as its weight, is not read
    here: ``arrays`` holds a :class:`.wire.StandIn` for it and ``deferred`` (a :class:`.wire.Deferred`
    holding the open file; the caller closes it) reads it once, into the packing's scratch buffer. Any
    other model or source: :func:`read`'s answer and ``None``.
    """
    onnx = _import_onnx()
    if isinstance(model, onnx.ModelProto) or not isinstance(model, (str, os.PathLike, bytes, bytearray,
                                                                      memoryview)):
        return (*read(model), None)
    if isinstance(model, (str, os.PathLike)):
        f = open(model, "rb")
        size = os.fstat(f.fileno()).st_size
    else:
        data = bytes(model)
        f, size = io.BytesIO(data), len(data)
    try:
        walked = wire.walk(f, size)
        if walked is None:
            return load_model(model), {}, None, None  # (as read: the framing is not the fast path's)
        stripped, payloads, order, r = walked
        proto = onnx.load_model_from_string(stripped)
        external = any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer)
        weights = set() if external else _conv_weights(proto, payloads, order)
        arrays = wire.read_payloads(r, {n: p for n, p in payloads.items() if n not in weights})
        if arrays is None:
            return load_model(model), {}, None, None
        if external:
            onnx.load_external_data_for_model(proto, os.path.dirname(os.fspath(model)) or ".")
        if not weights:
            return proto, arrays, order, None
        for name in weights:
            arrays[name] = wire.stand_in(payloads[name].dtype, payloads[name].dims)
        deferred = wire.Deferred(r, f, {n: payloads[n] for n in weights})
        f = None  # (the caller's now)
        return proto, arrays, order, deferred
    finally:
        if f is not None:
            f.close()


def _conv_weights(proto, payloads, order) -> set:
    """The initializers :func:`read_deferred` leaves in the file; none where a graph input has a free
    dimension (the plan is made after the load: it packs from the weights the graph keeps)."""
    g = proto.graph
    inits = set(order) | {t.name for t in g.initializer}
    for v in g.input:
        if v.name in inits:
            continue
        t = v.type.tensor_type
        if not t.elem_type or not t.HasField("shape") or not all(d.HasField("dim_value") for d in t.shape.dim):
            return set()
    # each value's readers, in the proto (the graph is not parsed yet: _consumers counts a Graph's)
    readers = Counter(chain((name for n in g.node for name in n.input), (o.name for o in g.output)))
    weights = set()
    for n in g.node:
        if n.op_type == "Conv" and n.domain in ("", "ai.onnx") and len(n.input) > 1:
            p = payloads.get(n.input[1])
            if (p is not None and readers[n.input[1]] == 1 and p.dtype in (np.float32, np.float64)
                    and len(p.dims) in (3, 4)):
                weights.add(n.input[1])
    return weights


def _tensor_info(value_info, np_dtype) -> TensorInfo:
    t = value_info.type.tensor_type
    shape = None
    if t.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)
    return TensorInfo(value_info.name, shape, np_dtype(t.elem_type) if t.elem_type else None)


def parse(proto, preloaded: Optional[Dict[str, np.ndarray]] = None,
          order: Optional[List[str]] = None) -> Graph:
    """The graph of ``proto``; ``preloaded``/``order`` are the initializers :func:`read` took out of it."""
    onnx = _import_onnx()
    from onnx import helper, numpy_helper

    def np_dtype(code):
        try:
            return np.dtype(helper.tensor_dtype_to_np_dtype(code))
        except (KeyError, TypeError):
            return None

    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=1)
    g = proto.graph
    if g.sparse_initializer:
        raise NotImplementedError("sparse initializers are not supported by fastpoint")
    parsed = iter([(t.name, numpy_helper.to_array(t)) for t in g.initializer])
    if order is None:
        inits = dict(parsed)
    else:
        inits = {}
        for name in order:  # file order: a preloaded array, or the next one onnx parsed
            key, value = (name, preloaded[name]) if name else next(parsed)
            inits[key] = value
        inits.update(parsed)
    A = onnx.AttributeProto
    INT, INTS, FLOAT, TENSOR, SUBGRAPHS = A.INT, A.INTS, A.FLOAT, A.TENSOR, (A.GRAPH, A.GRAPHS)
    nodes = []
    for i, n in enumerate(g.node):
        op_type = n.op_type
        name = n.name or f"{op_type}_{i}"
        cls = op_class(op_type, n.domain, name)  # an unknown op type is named before its attributes
        attrs = {}
        for a in n.attribute:
            kind = a.type
            if kind == INTS and not a.ref_attr_name:  # the common kinds, read directly (as onnx's helper does)
                value = list(a.ints)
            elif kind == INT and not a.ref_attr_name:
                value = a.i
            elif kind == FLOAT and not a.ref_attr_name:
                value = a.f
            else:
                value = helper.get_attribute_value(a)
                if kind == TENSOR:
                    value = numpy_helper.to_array(value)
                elif isinstance(value, bytes):
                    value = value.decode()
                elif isinstance(value, list) and value and isinstance(value[0], bytes):
                    value = [v.decode() for v in value]
                elif kind in SUBGRAPHS:
                    raise NotImplementedError(f"{op_type} node {name!r}: attribute {a.name!r} (a subgraph) "
                                              "is not supported by fastpoint")
            attrs[a.name] = value
        ins, outs = list(n.input), list(n.output)
        op = cls(op_type, name, attrs, opset, len(ins), len(outs))
        nodes.append(Node(op, ins, outs))
    inputs = [_tensor_info(v, np_dtype) for v in g.input if v.name not in inits]
    outputs = [_tensor_info(v, np_dtype) for v in g.output]
    graph = Graph(nodes, inits, inputs, outputs, opset)
    for node in graph.nodes:
        bind = getattr(node.op, "bind_constants", None)
        if bind is not None:
            bind({i: inits[name] for i, name in enumerate(node.inputs) if name in inits})
    return graph


def _consumers(graph: Graph) -> Dict[str, int]:
    count: Dict[str, int] = {}
    for node in graph.nodes:
        for name in node.inputs:
            count[name] = count.get(name, 0) + 1
    for out in graph.outputs:
        count[out.name] = count.get(out.name, 0) + 1
    return count


def _readers(graph: Graph) -> Dict[str, List[Node]]:
    """Each value's reading nodes, once per input slot (a graph output counts as one more reader, None)."""
    readers: Dict[str, List[Optional[Node]]] = {}
    for node in graph.nodes:
        for name in node.inputs:
            readers.setdefault(name, []).append(node)
    for out in graph.outputs:
        readers.setdefault(out.name, []).append(None)
    return readers  # type: ignore[return-value]


def _drop_nodes(graph: Graph, removed: List[Node]) -> None:
    """Remove ``removed`` from the node list in one pass, by identity (a Node's ``==`` compares fields)."""
    if removed:
        gone = {id(n) for n in removed}
        graph.nodes[:] = [n for n in graph.nodes if id(n) not in gone]


def _fusable_pairs(graph: Graph, first: Tuple[str, ...], second: str, count: Optional[Dict[str, int]] = None):
    """(producer, consumer) node pairs where the consumer is the producer's only reader (``count``: the
    graph's :func:`_consumers`, if the caller has them)."""
    count = _consumers(graph) if count is None else count
    producer = {o: n for n in graph.nodes for o in n.outputs}
    for node in graph.nodes:
        if node.op.op_type != second or not node.inputs:
            continue
        prev = producer.get(node.inputs[0])
        if prev is not None and prev.op.op_type in first and count.get(node.inputs[0]) == 1:
            yield prev, node


def _replace(removed: Node, kept: Node) -> None:
    """``kept`` now produces ``removed``'s output (``removed`` read ``kept``'s; the caller drops it)."""
    kept.outputs[0] = removed.outputs[0]


def fold_batch_norm(graph: Graph) -> int:
    folded: List[Node] = []
    readers = _consumers(graph)
    for conv, bn in list(_fusable_pairs(graph, ("Conv",), "BatchNormalization", readers)):
        params = [graph.initializers.get(name) for name in bn.inputs[1:5]]
        if conv.op.weight is None or conv.op.activation or any(p is None for p in params) or len(bn.outputs) > 1:
            continue
        w = conv.op.weight
        k, c = bn.op.scale_shift(*params)
        b = np.zeros(w.shape[0]) if conv.op.bias is None else conv.op.bias.astype(np.float64)
        if isinstance(w, wire.StandIn):  # a weight still in the file: folded as it is read (ops_conv.py)
            conv.op.fold_scale = k
        else:
            # the loader's own array (graph/wire.py), read by this Conv only: folded in place, no new pages
            own = w.flags.writeable and w.flags.c_contiguous and readers.get(conv.inputs[1]) == 1 \
                and graph.initializers.get(conv.inputs[1]) is w
            conv.op.weight = fold_weight(w, k, w if own else np.empty_like(w))
        conv.op.bias = (b * k + c).astype(w.dtype)
        conv.op.fused.append("BatchNormalization")
        _replace(bn, conv)
        folded.append(bn)
    _drop_nodes(graph, folded)
    return len(folded)


def fold_weight(w: np.ndarray, k: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``w * k`` per output channel into ``out`` (may be ``w``): the product in float64, rounded once into
    the weight's dtype (no float64 copy of W). Contiguous float32/float64 arrays take one C pass
    (csrc/network/fold.c, the same bits as NumPy's buffered multiply, which ran at ~7 GB/s), others NumPy."""
    k = np.ascontiguousarray(k, np.float64)
    lib = _fold_lib()
    if (lib is not None and w.dtype == out.dtype and w.dtype in (np.float32, np.float64) and w.ndim >= 1
            and w.shape == out.shape and k.shape == (w.shape[0],) and w.flags.c_contiguous and w.flags.aligned
            and out.flags.c_contiguous and out.flags.aligned and out.flags.writeable
            and (out is w or not np.may_share_memory(w, out))):
        from ..backends.c import _ffi

        ctype = "float[]" if w.dtype == np.float32 else "double[]"
        fold = lib.fp_fold_scale_f32 if w.dtype == np.float32 else lib.fp_fold_scale_f64
        cout = w.shape[0]
        per = w.size // cout if cout else 0
        if fold(_ffi.from_buffer(ctype, w), _ffi.from_buffer("double[]", k), _ffi.from_buffer(ctype, out, True),
                cout, per) == 0:
            return out
    np.multiply(w, k.reshape((-1,) + (1,) * (w.ndim - 1)), out=out, dtype=np.float64, casting="unsafe")
    return out


def _fold_lib():
    """The C library with the fold (None without the C extension, or one built before it)."""
    from ..backends.c import _lib

    return _lib if _lib is not None and hasattr(_lib, "fp_fold_scale_f32") else None


def fuse_relu(graph: Graph) -> int:
    fused: List[Node] = []
    for conv, relu in list(_fusable_pairs(graph, ("Conv", "ConvTranspose"), "Relu")):
        if conv.op.activation is None:
            conv.op.activation = "relu"
            conv.op.fused.append("Relu")
            _replace(relu, conv)
            fused.append(relu)
    _drop_nodes(graph, fused)
    return len(fused)
