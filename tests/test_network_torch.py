"""Small PyTorch models exported to ONNX inside the test, run by fastpoint, against PyTorch and ONNX Runtime."""

import io
import warnings

import numpy as np
import pytest

import fastpoint as fp

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
nn = torch.nn
F = nn.functional


def export(model, x, dynamic=False, opset=17):
    buf = io.BytesIO()
    kwargs = {}
    if dynamic:
        kwargs["dynamic_axes"] = {"input": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: opset 17 as the issue asks
        torch.onnx.export(model, (torch.from_numpy(x),), buf, opset_version=opset, input_names=["input"],
                          output_names=["output"], dynamo=False, do_constant_folding=False, **kwargs)
    return buf.getvalue()


def randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=g) - 0.5)
    return model.eval()


class TinySeg(nn.Module):
    """Conv-BN-ReLU blocks, max/avg pooling (ceil mode), a residual add, HardSwish, bilinear upsampling
    to the input size, nearest by 2, concat, a 1x1 head: the patterns of segmentation networks."""

    def __init__(self, transposed=False):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16), nn.BatchNorm2d(16),
                                nn.LeakyReLU(0.1))
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2) if transposed else None
        self.head = nn.Conv2d(8 + 16, 5, 1)

    def forward(self, x):
        a = self.c1(x)
        b = self.c2(F.max_pool2d(a, 3, 2, 1, ceil_mode=True))
        b = b + self.dw(b)
        b = F.avg_pool2d(b, 2, ceil_mode=True, count_include_pad=False)
        if self.up is not None:
            u = self.up(F.interpolate(b, scale_factor=2, mode="nearest"))
            u = F.interpolate(u, size=a.shape[2:], mode="bilinear", align_corners=False)
        else:
            u = F.interpolate(b, size=a.shape[2:], mode="bilinear", align_corners=False)[:, :8]
        v = F.interpolate(b, size=a.shape[2:], mode="bilinear", align_corners=True)
        return torch.softmax(self.head(torch.cat([u, v], 1)), dim=1)


def _check(model, x, net, atol=1e-5):
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    y = net(x)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=atol * max(1.0, np.abs(ref).max()))
    return y


def test_tiny_segmentation_net_matches_torch_and_onnxruntime():
    torch.manual_seed(0)
    model = randomize_bn(TinySeg())
    x = np.random.default_rng(0).standard_normal((1, 3, 29, 34)).astype(np.float32)
    blob = export(model, x)
    net = fp.load_onnx(blob)
    y = _check(model, x, net)
    ort = pytest.importorskip("onnxruntime")
    ref = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    table = str(net)
    assert "BatchNormalization+Relu" in table and "BatchNormalization" in table
    ops = [s.node.op.op_type for s in net.plan().steps]
    assert "BatchNormalization" not in ops and "Shape" not in ops  # folded


def test_free_height_and_width_plans_per_shape():
    torch.manual_seed(1)
    model = randomize_bn(TinySeg())
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    net = fp.load_onnx(export(model, x, dynamic=True))
    assert net.inputs[0].shape == ("batch", 3, "height", "width")
    for shape in [(1, 3, 32, 32), (2, 3, 21, 40), (1, 3, 17, 9)]:
        _check(model, np.random.default_rng(2).standard_normal(shape).astype(np.float32), net)
    assert len(net._plans) == 3


def test_transposed_convolution_model():
    if not hasattr(fp, "conv_transpose2d"):
        pytest.skip("fastpoint.conv_transpose2d is not in this build (the conv1d issue's API)")
    torch.manual_seed(2)
    model = randomize_bn(TinySeg(transposed=True))
    x = np.random.default_rng(3).standard_normal((1, 3, 24, 20)).astype(np.float32)
    _check(model, x, fp.load_onnx(export(model, x)))


@pytest.mark.parametrize("kw", [dict(stride=2, padding=1, output_padding=1), dict(stride=3, padding=0),
                                dict(stride=2, padding=1, groups=2, dilation=2)])
def test_conv_transpose_node(kw):
    if not hasattr(fp, "conv_transpose2d"):
        pytest.skip("fastpoint.conv_transpose2d is not in this build (the conv1d issue's API)")
    torch.manual_seed(3)
    model = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, **kw), nn.ReLU()).eval()
    x = np.random.default_rng(4).standard_normal((2, 4, 7, 9)).astype(np.float32)
    _check(model, x, fp.load_onnx(export(model, x)))


def test_classifier_head_flatten_gemm():
    torch.manual_seed(4)
    model = randomize_bn(nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU6(),
                                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10), nn.Sigmoid()))
    x = np.random.default_rng(5).standard_normal((3, 3, 16, 16)).astype(np.float32)
    _check(model, x, fp.load_onnx(export(model, x)))
