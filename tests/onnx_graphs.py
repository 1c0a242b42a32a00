"""Small ONNX graphs built with onnx.helper for the network tests (no files, no network)."""

import numpy as np

onnx = __import__("pytest").importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def model(nodes, inputs, outputs, inits=(), opset=17):
    """inputs/outputs: (name, shape) with float32; inits: {name: array}."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def bn_params(rng, c, prefix="bn"):
    """Non-trivial running statistics, so folding the BN into the conv changes the weights."""
    return {f"{prefix}_g": rng.uniform(0.5, 2.0, c).astype(np.float32),
            f"{prefix}_b": rng.standard_normal(c).astype(np.float32),
            f"{prefix}_m": rng.uniform(-1, 1, c).astype(np.float32),
            f"{prefix}_v": rng.uniform(0.2, 3.0, c).astype(np.float32)}


def bn_node(x, y, prefix="bn", eps=1e-5):
    return helper.make_node("BatchNormalization", [x] + [f"{prefix}_{k}" for k in "gbmv"], [y], epsilon=eps)


def ort_run(m, feeds):
    ort = __import__("pytest").importorskip("onnxruntime")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def reference_run(m, feeds):
    """onnx's reference evaluator (slow, small shapes only); ONNX Runtime where installed is faster."""
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(m).run(None, feeds)
