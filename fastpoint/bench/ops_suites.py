"""Benchmark layers of conv1d and transposed convolution, and their contenders.

The suites ``conv1d`` and ``transposed`` of ``fastpoint bench``: each layer is a :class:`OpLayer`, which
answers what the runner asks of a :class:`fastpoint.bench.suites.Layer` (name, group, shape, flops, bytes) and
sets up its own contenders (``prepare``): fastpoint backends, named as in conv2d's suites (``c`` the
prepacked layer ``fp.Conv1d`` / ``fp.ConvTranspose2d``, ``c-call`` the one-shot call
``fp.conv1d(x, w, b, ..., out=out)``: weights checked and packed in every call, as a user calling the
function pays), torch (``F.conv1d`` / ``F.conv_transpose2d``) and ONNX Runtime (a one-node ``Conv`` /
``ConvTranspose`` model, IOBinding).  Shapes from the published networks: PointNet, WaveNet, Conformer,
an ECG ResNet, wav2vec2's feature encoder; U-Net, FCN-8s and DCGAN up-sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Tuple, Union

import numpy as np

if TYPE_CHECKING:  # the suites module imports this one, and the peers import the suites: no cycle at run time
    from .peers import Prepared


@dataclass(frozen=True)
class OpLayer:
    name: str
    group: str  # pointnet, wavenet, conformer, ecg, wav2vec2; unet_up, upconv3, fcn8s, dcgan
    op: str  # "conv1d" or "transposed"
    n: int
    cin: int
    cout: int
    h: int  # 1 for conv1d
    w: int  # L for conv1d
    k: int
    stride: int = 1
    padding: Union[int, Tuple[int, int]] = 0  # conv1d: an int or a (left, right) pair
    dilation: int = 1
    groups: int = 1
    output_padding: int = 0

    @property
    def pads(self) -> Tuple[int, int]:
        return self.padding if isinstance(self.padding, tuple) else (self.padding, self.padding)

    @property
    def oh(self) -> int:
        if self.op == "conv1d":
            return 1
        return (self.h - 1) * self.stride - 2 * self.padding + self.dilation * (self.k - 1) + self.output_padding + 1

    @property
    def ow(self) -> int:
        if self.op == "conv1d":
            return (self.w + sum(self.pads) - self.dilation * (self.k - 1) - 1) // self.stride + 1
        return (self.w - 1) * self.stride - 2 * self.padding + self.dilation * (self.k - 1) + self.output_padding + 1

    @property
    def taps(self) -> int:
        return self.k if self.op == "conv1d" else self.k * self.k

    @property
    def flops(self) -> int:
        """2 x multiply-adds: per output (conv1d) or per input pixel and tap (transposed)."""
        if self.op == "conv1d":
            return 2 * self.n * self.cout * self.ow * (self.cin // self.groups) * self.k
        return 2 * self.n * self.cin * self.h * self.w * (self.cout // self.groups) * self.taps

    @property
    def min_bytes(self) -> int:
        return 4 * (self.n * self.cin * self.h * self.w + self.n * self.cout * self.oh * self.ow
                    + self.cin * (self.cout // self.groups) * self.taps)

    @property
    def memory_bound(self) -> bool:
        return (self.groups > 1 and self.groups == self.cin) or self.flops / self.min_bytes < 20

    @property
    def shape(self) -> str:
        extra = "".join([f" s{self.stride}" if self.stride > 1 else "",
                         f" p{self.padding}" if self.padding else "",
                         f" op{self.output_padding}" if self.output_padding else "",
                         f" d{self.dilation}" if self.dilation > 1 else "",
                         f" g{self.groups}" if self.groups > 1 else ""]).replace(" ", " ")
        size = f"@{self.w}" if self.op == "conv1d" else f"@{self.h}x{self.w}"
        batch = f" N={self.n}" if self.n > 1 else ""
        return f"{self.cin}->{self.cout} k{self.k}{extra} {size}{batch}".replace("(", "").replace(")", "")

    def arrays(self, seed: int = 0):
        """x (NCL / NCHW), weight in the op's own shape, bias."""
        rng = np.random.default_rng(seed)
        if self.op == "conv1d":
            x = rng.standard_normal((self.n, self.cin, self.w), dtype=np.float32)
            w = rng.standard_normal((self.cout, self.cin // self.groups, self.k), dtype=np.float32)
            w /= np.sqrt(self.cin // self.groups * self.k)
        else:
            x = rng.standard_normal((self.n, self.cin, self.h, self.w), dtype=np.float32)
            w = rng.standard_normal((self.cin, self.cout // self.groups, self.k, self.k), dtype=np.float32)
            w /= np.sqrt(self.cin // self.groups * self.taps)
        return x, w, (0.1 * rng.standard_normal(self.cout, dtype=np.float32))

    def out_shape(self, layout: str) -> Tuple[int, ...]:
        if self.op == "conv1d":
            return (self.n, self.cout, self.ow) if layout == "NCHW" else (self.n, self.ow, self.cout)
        return (self.n, self.cout, self.oh, self.ow) if layout == "NCHW" else (self.n, self.oh, self.ow, self.cout)

    # ------------------------------------------------------------------ contenders

    def prepare(self, name: str, kind: str, threads: int, layout: str) -> Union[Prepared, str]:
        from .peers import why_unavailable

        if kind == "backend":
            from .report import CALL_NEW

            if name.endswith(CALL_NEW):
                return f"n/a: {CALL_NEW} is timed on the conv2d suites only"
            return self._fastpoint(name, threads, layout)
        reason = why_unavailable(name)
        if reason:
            return reason
        if name == "torch":
            return self._torch(threads)
        if name == "onnxruntime":
            return self._onnxruntime(threads)
        return f"n/a: peer {name} has no {self.op} here"

    def _channels_last(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(a, 1, -1))

    def _fastpoint(self, backend: str, threads: int, layout: str) -> Prepared:
        import fastpoint as fp

        from .peers import Prepared
        from .report import CALL

        x, w, b = self.arrays()
        if layout == "NHWC":
            x = self._channels_last(x)
        out = np.empty(self.out_shape(layout), np.float32)
        fp.set_num_threads(threads)
        # As for conv2d's suites: ``c`` times the prepacked layer, ``c-call`` the one-shot function.
        one_shot = backend.endswith(CALL)
        name = backend[:-len(CALL)] if one_shot else backend
        if self.op == "conv1d":
            lay = "NCL" if layout == "NCHW" else "NLC"
            if one_shot:
                def run():
                    fp.conv1d(x, w, b, self.stride, self.padding, self.dilation, self.groups, layout=lay,
                              backend=name, out=out)
            else:
                layer = fp.Conv1d(w, b, self.stride, self.padding, self.dilation, self.groups, layout=lay,
                                  backend=name)

                def run():
                    layer(x, out=out)
        elif one_shot:
            def run():
                fp.conv_transpose2d(x, w, b, self.stride, self.padding, self.output_padding, self.groups,
                                    self.dilation, layout=layout, backend=name, out=out)
        else:
            layer = fp.ConvTranspose2d(w, b, self.stride, self.padding, self.output_padding, self.groups,
                                       self.dilation, layout=layout, backend=name)

            def run():
                layer(x, out=out)

        def result():
            return out if layout == "NCHW" else np.ascontiguousarray(np.moveaxis(out, -1, 1))

        return Prepared(run, result, layout, "one-shot calls (weights packed in each)" if one_shot else "")

    def _torch(self, threads: int) -> Prepared:
        import torch
        import torch.nn.functional as F

        from .peers import Prepared

        torch.set_num_threads(threads)
        x, w, b = (torch.from_numpy(a) for a in self.arrays())
        box = {}
        if self.op == "conv1d":
            left, right = self.pads

            def run():
                with torch.inference_mode():
                    xp = x if left == right else F.pad(x, (left, right))  # PyTorch pads first
                    box["y"] = F.conv1d(xp, w, b, self.stride, left if left == right else 0, self.dilation,
                                        self.groups)
            note = "" if left == right else "F.pad + conv1d (timed)"
        else:
            def run():
                with torch.inference_mode():
                    box["y"] = F.conv_transpose2d(x, w, b, self.stride, self.padding, self.output_padding,
                                                  self.groups, self.dilation)
            note = ""
        return Prepared(run, lambda: box["y"].numpy() if "y" in box else None, "NCHW", note)

    def _onnx_model(self, w: np.ndarray, b: np.ndarray) -> bytes:
        from onnx import TensorProto, helper, numpy_helper

        if self.op == "conv1d":
            node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[self.k], strides=[self.stride],
                                    pads=list(self.pads), dilations=[self.dilation], group=self.groups)
            x_shape = [self.n, self.cin, self.w]
        else:
            node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], kernel_shape=[self.k] * 2,
                                    strides=[self.stride] * 2, pads=[self.padding] * 4, dilations=[self.dilation] * 2,
                                    output_padding=[self.output_padding] * 2, group=self.groups)
            x_shape = [self.n, self.cin, self.h, self.w]
        graph = helper.make_graph(
            [node], self.op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(self.out_shape("NCHW")))],
            initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        return model.SerializeToString()

    def _onnxruntime(self, threads: int) -> Prepared:
        import onnxruntime as ort

        from .peers import Prepared

        x, w, b = self.arrays()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(self._onnx_model(w, b), opts, providers=["CPUExecutionProvider"])
        y = np.empty(self.out_shape("NCHW"), np.float32)
        binding = sess.io_binding()
        binding.bind_cpu_input("x", x)
        binding.bind_output("y", "cpu", 0, np.float32, list(y.shape), y.ctypes.data)

        def run():
            sess.run_with_iobinding(binding)

        return Prepared(run, lambda: y, "NCHW", "IOBinding, output preallocated", keep=(x, y, sess, binding))


def _c1(name, group, n, cin, cout, length, k, stride=1, padding=0, dilation=1, groups=1) -> OpLayer:
    return OpLayer(name, group, "conv1d", n, cin, cout, 1, length, k, stride, padding, dilation, groups)


def _t2(name, group, n, cin, cout, hw, k, stride, padding=0, output_padding=0) -> OpLayer:
    return OpLayer(name, group, "transposed", n, cin, cout, hw, hw, k, stride, padding, 1, 1, output_padding)


CONV1D: List[OpLayer] = [
    _c1("pointnet_3_64", "pointnet", 32, 3, 64, 1024, 1),
    _c1("pointnet_64_128", "pointnet", 32, 64, 128, 1024, 1),
    _c1("pointnet_128_1024", "pointnet", 32, 128, 1024, 1024, 1),
    _c1("wavenet_k2_d64", "wavenet", 1, 64, 64, 16000, 2, padding=64, dilation=64),
    _c1("conformer_dw_k31", "conformer", 8, 256, 256, 250, 31, padding=15, groups=256),
    _c1("ecg_k7_64", "ecg", 1, 64, 64, 5000, 7, padding=3),
    _c1("wav2vec2_conv0", "wav2vec2", 1, 1, 512, 16000, 10, stride=5),
    _c1("wav2vec2_conv1", "wav2vec2", 1, 512, 512, 3199, 3, stride=2),
]

TRANSPOSED: List[OpLayer] = [
    _t2("unet_up_1024_512_28", "unet_up", 1, 1024, 512, 28, 2, 2),
    _t2("unet_up_256_128_64", "unet_up", 1, 256, 128, 64, 2, 2),
    _t2("unet_up_128_64_128", "unet_up", 1, 128, 64, 128, 2, 2),
    _t2("up3x3_s2_128_64_64", "upconv3", 1, 128, 64, 64, 3, 2, 1, 1),
    _t2("fcn8s_k4_s2_21_16", "fcn8s", 1, 21, 21, 16, 4, 2, 1),
    _t2("fcn8s_k16_s8_21_32", "fcn8s", 1, 21, 21, 32, 16, 8, 4),
    _t2("dcgan_k4_s2_256_128_16", "dcgan", 16, 256, 128, 16, 4, 2, 1),
]
