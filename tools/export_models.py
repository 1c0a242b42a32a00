"""Export the public model suite of docs/networks.md to ONNX (opset 17, random weights, batch 1, 3x256x256).

    python tools/export_models.py OUTDIR [--size 256] [--only fcn_resnet50,...]

* torchvision ``fcn_resnet50`` (aux_loss=False) and ``lraspp_mobilenet_v3_large``,
* MONAI ``BasicUNet(spatial_dims=2, in_channels=3, out_channels=2, norm="batch")``.

Weights are random (seeded) and every BatchNorm gets uniform running means and variances, so folding
BN into the convolutions is exercised (fresh BN layers have mean 0 and variance 1, which folds to
almost nothing). Needs torch (CPU), torchvision (--no-deps) and monai; the models are not committed.
"""

from __future__ import annotations

import argparse
import os
import sys
import types


def _import_torchvision():
    """torchvision's wheel registers operators for a CUDA torch; its model code loads without them."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError:
        for name in ("torchvision._meta_registrations",):
            sys.modules[name] = types.ModuleType(name)
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            if name != "torchvision._meta_registrations":
                del sys.modules[name]
        import torchvision  # noqa: F401
    import torchvision.models.segmentation as seg

    return seg


def _randomize_bn(model, seed: int) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=g) - 0.5)


def build(name: str):
    import torch

    torch.manual_seed(0)
    if name == "fcn_resnet50":
        model = _import_torchvision().fcn_resnet50(weights=None, weights_backbone=None, aux_loss=False)
    elif name == "lraspp_mobilenet_v3_large":
        model = _import_torchvision().lraspp_mobilenet_v3_large(weights=None, weights_backbone=None)
    elif name == "basicunet":
        from monai.networks.nets import BasicUNet

        model = BasicUNet(spatial_dims=2, in_channels=3, out_channels=2, norm="batch")
    else:
        raise ValueError(f"unknown model {name!r}; one of {MODELS}")
    _randomize_bn(model, 1)
    model.eval()

    class Wrapped(torch.nn.Module):  # torchvision's segmentation models return a dict: export its "out"
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            y = self.inner(x)
            return y["out"] if isinstance(y, dict) else y

    return Wrapped(model).eval()


MODELS = ("fcn_resnet50", "lraspp_mobilenet_v3_large", "basicunet")


def export(name: str, path: str, size: int = 256) -> str:
    import torch

    model = build(name)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        torch.onnx.export(model, (x,), path, opset_version=17, input_names=["input"], output_names=["output"],
                          dynamo=False, do_constant_folding=False)  # keep BN and shape nodes: fastpoint folds them
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outdir")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--only", default=",".join(MODELS))
    args = p.parse_args(argv)
    os.makedirs(args.outdir, exist_ok=True)
    for name in args.only.split(","):
        path = export(name, os.path.join(args.outdir, f"{name}.onnx"), args.size)
        print(f"{name}: {path} ({os.path.getsize(path) / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
