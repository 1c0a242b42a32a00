"""Other libraries' convolutions, set up to be timed against fastpoint on the same layer.

Each peer runs in its own native layout with its input already in that layout (conversions are not
timed), with its weights prepared once (session / interpreter / tensor built before timing), at the
thread count asked for.  A peer is offered only when its package imports.

=============  =====================================================================================
peer           what is timed
=============  =====================================================================================
torch          ``torch.nn.functional.conv2d`` on NCHW tensors (``torch.set_num_threads``)
torch-cl       the same on channels_last tensors (input and weight converted before timing)
onnxruntime    a one-node ONNX ``Conv`` model built in memory (weights as initializers), one session
               per thread count (``intra_op_num_threads``), input and output bound once (IOBinding)
xnnpack        a one-op float32 TFLite ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` model built in memory
               from the flatbuffers schema that ``ai-edge-litert`` ships, NHWC, run by the LiteRT
               interpreter (which hands float models to XNNPACK); only ``invoke()`` is timed, the
               input is written into the interpreter's own buffer beforehand
numpy-gemm     not a convolution: ``np.matmul`` of the layer's GEMM shape (M = Cout, K = Cin*KH*KW,
               N = OH*OW per image) on ready-made operands, i.e. the speed an im2col + BLAS
               convolution could reach at best (im2col not counted); BLAS threads via threadpoolctl.
               n/a for grouped and depthwise layers.
=============  =====================================================================================
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Union

import numpy as np

from .suites import Layer

PEERS = ("torch", "torch-cl", "onnxruntime", "xnnpack", "numpy-gemm")

_MODULES = {"torch": "torch", "torch-cl": "torch", "onnxruntime": "onnxruntime", "xnnpack": "ai_edge_litert",
            "numpy-gemm": "numpy"}
_INSTALL = {"torch": "pip install torch --index-url https://download.pytorch.org/whl/cpu",
            "onnxruntime": "pip install onnx onnxruntime", "ai_edge_litert": "pip install ai-edge-litert flatbuffers"}


@dataclass
class Prepared:
    """A peer ready to run one layer: ``run()`` computes the output, ``result()`` gives it as NCHW."""

    run: Callable[[], object]
    result: Callable[[], Optional[np.ndarray]]
    layout: str
    note: str = ""
    cleanup: List[Callable[[], None]] = field(default_factory=list)
    keep: tuple = ()  # buffers a peer reads or writes through raw pointers: alive while it runs

    def close(self) -> None:
        for fn in self.cleanup:
            fn()


CONV_SUFFIX = "+conv"  # "xnnpack+conv": the peer with layout conversions timed (see prepare)


def why_unavailable(peer: str) -> Optional[str]:
    """None when ``peer`` can run here, else the reason and how to install it."""
    peer = peer[:-len(CONV_SUFFIX)] if peer.endswith(CONV_SUFFIX) else peer
    if peer not in _MODULES:
        return f"unknown peer {peer!r}; known: {', '.join(PEERS)}"
    module = _MODULES[peer]
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed ({_INSTALL.get(module, 'pip install ' + module)})"
    if peer == "xnnpack" and importlib.util.find_spec("flatbuffers") is None:
        return "flatbuffers is not installed (pip install flatbuffers)"
    if peer == "onnxruntime" and importlib.util.find_spec("onnx") is None:
        return "onnx (to build the one-Conv model) is not installed (pip install onnx)"
    return None


def available_peers() -> List[str]:
    return [p for p in PEERS if why_unavailable(p) is None]


def prepare(peer: str, layer: Layer, threads: int, layout: str = "NCHW",
            conversions: bool = False) -> Union[Prepared, str]:
    """Set ``peer`` up for ``layer`` at ``threads`` threads; a string says why it does not apply.

    With ``conversions`` (or a peer name ending in ``+conv``, so that both can be timed in one run),
    a peer whose native layout is not ``layout`` starts from an input in ``layout`` and delivers its
    output in ``layout``, and the two conversions are timed with it: the cost a program holding
    ``layout`` data pays to call that library.
    """
    reason = why_unavailable(peer)
    if reason:
        return reason
    if peer.endswith(CONV_SUFFIX):
        peer, conversions = peer[:-len(CONV_SUFFIX)], True
    return _PREPARE[peer](layer, threads, layout, conversions)


@contextlib.contextmanager
def prepared_runs(peers: List[str], layer: Layer, threads: int,
                  layout: str) -> Iterator[Dict[str, Callable[[], object]]]:
    """The ``run`` of each of ``peers`` set up for ``layer``, for scripts that time them themselves.

    A peer that does not apply or is not installed is left out, with its reason on stderr; every peer
    set up is closed when the block ends.
    """
    ready: Dict[str, Prepared] = {}
    try:
        for peer in peers:
            got = prepare(peer, layer, threads, layout)
            if isinstance(got, str):
                print(f"# {peer} skipped on {layer.name}: {got}", file=sys.stderr)
            else:
                ready[peer] = got
        yield {peer: p.run for peer, p in ready.items()}
    finally:
        for p in ready.values():
            p.close()


def _nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


# --------------------------------------------------------------------------------------------- torch

def _torch(layer: Layer, threads: int, layout: str, conversions: bool, channels_last: bool = False) -> Prepared:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    x, w, b = layer.arrays("NCHW")
    tw, tb = torch.from_numpy(w), torch.from_numpy(b)
    if channels_last:
        tw = tw.contiguous(memory_format=torch.channels_last)
    native = "NHWC" if channels_last else "NCHW"
    convert = conversions and native != layout
    out: Dict[str, object] = {}
    args = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    note = "channels_last tensors" if channels_last else ""
    if not convert:
        tx = torch.from_numpy(x)
        if channels_last:
            tx = tx.contiguous(memory_format=torch.channels_last)

        def run():
            with torch.inference_mode():
                out["y"] = F.conv2d(tx, tw, tb, **args)
    else:
        note += (", " if note else "") + f"{layout} in and out, conversions timed"
        xl = torch.from_numpy(x if layout == "NCHW" else _nhwc(x))

        def run():
            with torch.inference_mode():
                if channels_last:  # NCHW data -> channels_last copy, result back to NCHW memory
                    y = F.conv2d(xl.contiguous(memory_format=torch.channels_last), tw, tb, **args)
                    out["y"] = y.contiguous()
                else:  # NHWC data -> NCHW copy, result back to NHWC memory
                    y = F.conv2d(xl.permute(0, 3, 1, 2).contiguous(), tw, tb, **args)
                    out["y"] = y.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)

    def result():
        return None if "y" not in out else out["y"].contiguous().numpy()

    return Prepared(run, result, layout if convert else native, note)


def _torch_cl(layer: Layer, threads: int, layout: str, conversions: bool) -> Prepared:
    return _torch(layer, threads, layout, conversions, channels_last=True)


# ------------------------------------------------------------------------------------- onnxruntime

def _onnx_model(layer: Layer, w: np.ndarray, b: np.ndarray) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[layer.k, layer.k],
                            strides=[layer.stride] * 2, pads=[layer.padding] * 4,
                            dilations=[layer.dilation] * 2, group=layer.groups)
    graph = helper.make_graph(
        [node], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [layer.n, layer.cin, layer.h, layer.w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [layer.n, layer.cout, layer.oh, layer.ow])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # understood by every onnxruntime of the last years
    return model.SerializeToString()


def _onnxruntime(layer: Layer, threads: int, layout: str, conversions: bool) -> Prepared:
    import onnxruntime as ort

    x, w, b = layer.arrays("NCHW")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(_onnx_model(layer, w, b), opts, providers=["CPUExecutionProvider"])
    y = np.empty((layer.n, layer.cout, layer.oh, layer.ow), np.float32)
    binding = sess.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_output("y", "cpu", 0, np.float32, list(y.shape), y.ctypes.data)

    if conversions and layout == "NHWC":
        x_user = _nhwc(x)
        y_user = np.empty((layer.n, layer.oh, layer.ow, layer.cout), np.float32)

        def run():
            np.copyto(x, x_user.transpose(0, 3, 1, 2))
            sess.run_with_iobinding(binding)
            np.copyto(y_user, y.transpose(0, 2, 3, 1))

        return Prepared(run, lambda: np.ascontiguousarray(y_user.transpose(0, 3, 1, 2)), "NHWC",
                        "IOBinding; NHWC in and out, conversions timed", keep=(x, y, sess, binding))

    def run():
        sess.run_with_iobinding(binding)

    return Prepared(run, lambda: y, "NCHW", "IOBinding, output preallocated", keep=(x, y, sess, binding))


# ------------------------------------------------------------------------------ xnnpack (LiteRT)

def _tflite_padding(layer: Layer):
    """TFLite knows only SAME and VALID; say which one equals PyTorch's padding, or None."""
    if layer.padding == 0:
        return 1  # VALID
    eff = layer.dilation * (layer.k - 1) + 1
    out = -(-layer.h // layer.stride)
    total = max((out - 1) * layer.stride + eff - layer.h, 0)
    if out == layer.oh and total == 2 * layer.padding:
        return 0  # SAME, split as PyTorch splits it
    return None


def _tflite_model(layer: Layer, w: np.ndarray, b: np.ndarray, h: int, wd: int, padding: int) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as tfl

    depthwise = layer.depthwise and layer.cout == layer.cin
    if depthwise:  # TFLite depthwise weights: (1, KH, KW, C)
        wt = np.ascontiguousarray(w.reshape(layer.cout, layer.k, layer.k).transpose(1, 2, 0)[None])
    else:  # CONV_2D weights: (Cout, KH, KW, Cin/groups)
        wt = np.ascontiguousarray(w.transpose(0, 2, 3, 1))

    def tensor(name, shape, buffer):
        t = tfl.TensorT()
        t.name, t.shape, t.type, t.buffer = name, list(shape), tfl.TensorType.FLOAT32, buffer
        return t

    def buf(arr=None):
        bb = tfl.BufferT()
        bb.data = None if arr is None else np.frombuffer(arr.tobytes(), np.uint8)
        return bb

    subgraph = tfl.SubGraphT()
    subgraph.tensors = [tensor("x", (layer.n, h, wd, layer.cin), 1), tensor("w", wt.shape, 2),
                        tensor("b", (layer.cout,), 3), tensor("y", (layer.n, layer.oh, layer.ow, layer.cout), 4)]
    subgraph.inputs, subgraph.outputs = [0], [3]
    op = tfl.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    if depthwise:
        opts = tfl.DepthwiseConv2DOptionsT()
        opts.depthMultiplier = 1
        op.builtinOptionsType = tfl.BuiltinOptions.DepthwiseConv2DOptions
    else:
        opts = tfl.Conv2DOptionsT()
        op.builtinOptionsType = tfl.BuiltinOptions.Conv2DOptions
    opts.padding, opts.strideH, opts.strideW = padding, layer.stride, layer.stride
    opts.dilationHFactor = opts.dilationWFactor = layer.dilation
    op.builtinOptions = opts
    subgraph.operators = [op]
    code = tfl.OperatorCodeT()
    code.builtinCode = tfl.BuiltinOperator.DEPTHWISE_CONV_2D if depthwise else tfl.BuiltinOperator.CONV_2D
    code.deprecatedBuiltinCode = code.builtinCode
    code.version = 2 if (depthwise and layer.dilation > 1) else 1
    model = tfl.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [subgraph]
    model.buffers = [buf(), buf(), buf(wt), buf(b), buf()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _xnnpack(layer: Layer, threads: int, layout: str, conversions: bool) -> Union[Prepared, str]:
    from ai_edge_litert.interpreter import Interpreter

    if layer.groups > 1 and not layer.depthwise:
        return "n/a: grouped (non-depthwise) convolution is not one TFLite op"
    x, w, b = layer.arrays("NCHW")
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # the same values as the other contenders get
    padding = _tflite_padding(layer)
    note = ""
    prepadded = padding is None
    if prepadded:  # e.g. stride 2 with PyTorch's symmetric padding: pad the input beforehand
        p = layer.padding
        x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        padding, note = 1, "input pre-padded (not timed): TFLite's SAME splits padding differently"
    interp = Interpreter(model_content=_tflite_model(layer, w, b, x.shape[1], x.shape[2], padding),
                         num_threads=threads)
    interp.allocate_tensors()
    in_idx = interp.get_input_details()[0]["index"]
    out_idx = interp.get_output_details()[0]["index"]
    interp.set_tensor(in_idx, x)

    def result():
        return np.ascontiguousarray(interp.get_tensor(out_idx).transpose(0, 3, 1, 2))

    if conversions and layout == "NCHW":
        p = layer.padding if prepadded else 0  # a pre-padded buffer keeps its zero border; fill the inside
        x_user = np.ascontiguousarray(x[:, p:p + layer.h, p:p + layer.w, :].transpose(0, 3, 1, 2))
        y_user = np.empty((layer.n, layer.cout, layer.oh, layer.ow), np.float32)

        # The interpreter refuses to run while a view of its buffers is alive, so each view is
        # made and dropped within one statement.
        def run():
            interp.tensor(in_idx)()[:, p:p + layer.h, p:p + layer.w, :] = x_user.transpose(0, 2, 3, 1)
            interp.invoke()
            np.copyto(y_user, interp.tensor(out_idx)().transpose(0, 3, 1, 2))

        note = (note + "; " if note else "") + "NCHW in and out, conversions timed"
        return Prepared(run, lambda: y_user, "NCHW", note)

    return Prepared(interp.invoke, result, "NHWC", note)


# -------------------------------------------------------------------------------------- numpy-gemm

@contextlib.contextmanager
def blas_threads(threads: int):
    """Limit NumPy's BLAS to ``threads`` threads (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def _numpy_gemm(layer: Layer, threads: int, layout: str, conversions: bool = False) -> Union[Prepared, str]:
    if layer.groups > 1:
        return "n/a: grouped / depthwise layers are not one GEMM"
    rng = np.random.default_rng(0)
    m, k, n = layer.cout, layer.cin * layer.k * layer.k, layer.oh * layer.ow
    if layout == "NHWC":  # Y (N, OH*OW, Cout) = X (N, OH*OW, K) @ W^T (K, Cout)
        a = rng.standard_normal((layer.n, n, k), dtype=np.float32)
        bm = rng.standard_normal((k, m), dtype=np.float32)
        y = np.empty((layer.n, n, m), np.float32)
    else:  # Y (N, Cout, OH*OW) = W (Cout, K) @ X (N, K, OH*OW)
        a = rng.standard_normal((m, k), dtype=np.float32)
        bm = rng.standard_normal((layer.n, k, n), dtype=np.float32)
        y = np.empty((layer.n, m, n), np.float32)
    limiter = blas_threads(threads)
    limiter.__enter__()

    def run():
        np.matmul(a, bm, out=y)

    note = f"np.matmul M={m} K={k} N={n}" + (f" x{layer.n}" if layer.n > 1 else "")
    return Prepared(run, lambda: None, layout, note, cleanup=[lambda: limiter.__exit__(None, None, None)])


_PREPARE = {"torch": _torch, "torch-cl": _torch_cl, "onnxruntime": _onnxruntime, "xnnpack": _xnnpack,
            "numpy-gemm": _numpy_gemm}
