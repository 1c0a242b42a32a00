"""The network ops outside convolutions on the public models' own shapes: the C loops (csrc/ops/)
against the NumPy reference and ONNX Runtime (a one-node model per op), alternated round by round in one
process, medians in microseconds (fastpoint.bench.timing.alternate).

    python tools/net_op_times.py [--threads 1] [--rounds 7]
"""

from __future__ import annotations

import argparse

import numpy as np

import fastpoint as fp
from fastpoint.bench.timing import alternate, median
from fastpoint.network import ops_elementwise as E
from fastpoint.ops import _c


def _ort(node, inputs, threads):
    """A one-node ONNX Runtime session; returns run(feeds)."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
           for n, a in inputs.items()]
    g = helper.make_graph([node], "g", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, inputs)


def cases(rng):
    from onnx import helper

    def img(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    x = img(1, 64, 128, 128)  # fcn_resnet50's stem max pool
    yield ("fcn maxpool 3x3/2 64x128x128", lambda b: fp.max_pool2d(x, 3, 2, 1, backend=b),
           helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), {"x": x})
    u = img(1, 32, 256, 256)  # BasicUNet's first down-sampling
    yield ("unet maxpool 2x2/2 32x256x256", lambda b: fp.max_pool2d(u, 2, 2, backend=b),
           helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2]), {"x": u})
    r = img(1, 21, 32, 32)  # fcn / lraspp heads: bilinear 32 -> 256
    yield ("bilinear 21x32x32 -> 256", lambda b: fp.interpolate(r, size=(256, 256), mode="bilinear", backend=b),
           helper.make_node("Resize", ["x", "", "", "s"], ["y"], mode="linear",
                            coordinate_transformation_mode="half_pixel"),
           {"x": r, "s": np.array([1, 21, 256, 256], np.int64)})
    se = img(1, 120, 32, 32)  # lraspp's squeeze-excitation: GAP, then x * scale, hardswish
    yield ("SE global avg pool 120x32x32", lambda b: _c.global_avg_pool(se, "NCHW") if b == "c" else
           se.mean(axis=(2, 3), keepdims=True), helper.make_node("GlobalAveragePool", ["x"], ["y"]), {"x": se})
    s = img(1, 120, 1, 1)
    out = np.empty_like(se)
    yield ("SE x * scale 120x32x32", lambda b: _c.eltwise(se, s, "mul", out=out) if b == "c" else
           np.multiply(se, s, out=out), helper.make_node("Mul", ["x", "s"], ["y"]), {"x": se, "s": s})
    h = img(1, 240, 32, 32)
    hout = np.empty_like(h)
    yield ("hardswish 240x32x32", lambda b: _c.eltwise(h, None, None, "hardswish", out=hout) if b == "c" else
           E._hard_swish(h, hout), helper.make_node("HardSwish", ["x"], ["y"]), {"x": h})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    fp.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"threads {args.threads}, C loops for {_c.isa_name()}; median us")
    print(f"{'op':<32}{'C':>10}{'NumPy':>10}{'ORT':>10}{'NumPy/C':>9}{'ORT/C':>7}")
    for name, fn, node, feeds in cases(rng):
        contenders = {"c": lambda fn=fn: fn("c"), "numpy": lambda fn=fn: fn("numpy")}
        ort = _ort(node, feeds, args.threads)
        if ort is not None:
            contenders["ort"] = ort
        t = {k: median(v) * 1e6 for k, v in alternate(contenders, rounds=args.rounds, sample_s=0.05).items()}
        o = t.get("ort", float("nan"))
        print(f"{name:<32}{t['c']:>10.0f}{t['numpy']:>10.0f}{o:>10.0f}{t['numpy'] / t['c']:>9.2f}{o / t['c']:>7.2f}")


if __name__ == "__main__":
    main()
