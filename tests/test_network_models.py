"""The public model suite (tools/export_models.py) at a small image size, against ONNX Runtime.

fcn_resnet50 (126 MB of weights) is marked slow; lraspp_mobilenet_v3_large and MONAI's BasicUNet run in
CI when torch, torchvision and monai are installed. The full-size measured table is in docs/networks.md.
"""

import io
import os
import runpy
import warnings

import numpy as np
import pytest

import fastpoint as fp

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

_TOOL = os.path.join(os.path.dirname(__file__), os.pardir, "tools", "export_models.py")


def _export(name, size):
    build = runpy.run_path(_TOOL)["build"]
    try:
        model = build(name)
    except ImportError as e:
        pytest.skip(f"{name} needs {e.name}")
    buf = io.BytesIO()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, opset_version=17, input_names=["input"], output_names=["output"],
                          dynamo=False, do_constant_folding=False)
    return buf.getvalue(), x.numpy()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("name,size", [
    ("lraspp_mobilenet_v3_large", 96),
    ("basicunet", 64),
    pytest.param("fcn_resnet50", 64, marks=pytest.mark.slow),
])
def test_public_model_matches_onnxruntime(name, size, layout):
    if name == "basicunet" and not hasattr(fp, "conv_transpose2d"):
        pytest.skip("BasicUNet upsamples by ConvTranspose: needs fastpoint.conv_transpose2d")
    blob, x = _export(name, size)
    ref = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    net = fp.load_onnx(blob, layout=layout)
    y = net(x)
    assert y.shape == ref.shape
    err = np.abs(y - ref).max() / np.abs(ref).max()
    assert err <= 1e-4, f"max |fastpoint - ORT| = {err:.2e} x max |ORT|"
    assert "BatchNormalization" not in [s.node.op.op_type for s in net.plan().steps]  # all folded
