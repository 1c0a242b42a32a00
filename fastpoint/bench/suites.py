"""The public benchmark suites, defined once as data.

``fastpoint bench``, the pytest-benchmark suites in ``bench/`` and the kernel-tuning scripts all read
these lists, so a layer means the same thing everywhere.  Shapes are those of the published networks
(ResNet-50, MobileNetV2, U-Net), float32, batch 1 unless the name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from .ops_suites import CONV1D, TRANSPOSED


@dataclass(frozen=True)
class Layer:
    name: str
    group: str  # resnet_1x1, resnet_3x3, resnet_stem, mbv2_pw, mbv2_dw, unet_3x3, unet_head, batch8, dilated
    n: int
    cin: int
    cout: int
    h: int
    w: int
    k: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1

    @property
    def oh(self) -> int:
        return (self.h + 2 * self.padding - self.dilation * (self.k - 1) - 1) // self.stride + 1

    @property
    def ow(self) -> int:
        return (self.w + 2 * self.padding - self.dilation * (self.k - 1) - 1) // self.stride + 1

    @property
    def flops(self) -> int:
        return 2 * self.n * self.cout * self.oh * self.ow * (self.cin // self.groups) * self.k * self.k

    @property
    def min_bytes(self) -> int:
        """Bytes a kernel must move at least: input + output + weights, float32, each once."""
        return 4 * (self.n * self.cin * self.h * self.w + self.n * self.cout * self.oh * self.ow
                    + self.cout * (self.cin // self.groups) * self.k * self.k)

    @property
    def pointwise(self) -> bool:
        return self.k == 1 and self.groups == 1

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.cin

    @property
    def memory_bound(self) -> bool:
        """Judged in GB/s rather than GFLOP/s: depthwise, and arithmetic intensity under 20 flop/byte."""
        return self.depthwise or self.flops / self.min_bytes < 20

    @property
    def shape(self) -> str:
        extra = "".join([f" s{self.stride}" if self.stride > 1 else "",
                         f" p{self.padding}" if self.padding else "",
                         f" d{self.dilation}" if self.dilation > 1 else "",
                         f" g{self.groups}" if self.groups > 1 else ""])
        batch = f" N={self.n}" if self.n > 1 else ""
        return f"{self.cin}->{self.cout} k{self.k}{extra} @{self.h}x{self.w}{batch}"

    def kwargs(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def arrays(self, layout: str = "NCHW", dtype=np.float32,
               seed: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        shape = (self.n, self.cin, self.h, self.w) if layout == "NCHW" else (self.n, self.h, self.w, self.cin)
        x = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
        fan_in = (self.cin // self.groups) * self.k * self.k
        w = (rng.standard_normal((self.cout, self.cin // self.groups, self.k, self.k), dtype=np.float32)
             / np.sqrt(fan_in)).astype(dtype)
        b = (0.1 * rng.standard_normal(self.cout, dtype=np.float32)).astype(dtype)
        return x, w, b


def _pw(name, group, cin, cout, hw, n=1, stride=1) -> Layer:
    return Layer(name, group, n, cin, cout, hw, hw, 1, stride)


def _c3(name, group, cin, cout, hw, n=1, stride=1, dilation=1, groups=1) -> Layer:
    return Layer(name, group, n, cin, cout, hw, hw, 3, stride, dilation, dilation, groups)


POINTWISE: List[Layer] = [
    _pw("r50_1x1_64_256_56", "resnet_1x1", 64, 256, 56),
    _pw("r50_1x1_256_64_56", "resnet_1x1", 256, 64, 56),
    _pw("r50_1x1_256_128_56", "resnet_1x1", 256, 128, 56),
    _pw("r50_1x1_128_512_28", "resnet_1x1", 128, 512, 28),
    _pw("r50_1x1_512_128_28", "resnet_1x1", 512, 128, 28),
    _pw("r50_1x1_1024_256_14", "resnet_1x1", 1024, 256, 14),
    _pw("r50_1x1_256_1024_14", "resnet_1x1", 256, 1024, 14),
    _pw("r50_1x1_2048_512_7", "resnet_1x1", 2048, 512, 7),
    _pw("r50_1x1_512_2048_7", "resnet_1x1", 512, 2048, 7),
    _pw("r50_1x1s2_256_512_56", "resnet_1x1", 256, 512, 56, stride=2),
    _pw("mb2_pw_32_16_112", "mbv2_pw", 32, 16, 112),
    _pw("mb2_pw_16_96_112", "mbv2_pw", 16, 96, 112),
    _pw("mb2_pw_144_24_56", "mbv2_pw", 144, 24, 56),
    _pw("mb2_pw_960_320_7", "mbv2_pw", 960, 320, 7),
    _pw("unet_head_64_2_256", "unet_head", 64, 2, 256),
    _pw("unet_head_64_21_256", "unet_head", 64, 21, 256),
    _pw("b8_r50_1x1_256_64_56", "batch8", 256, 64, 56, n=8),
]

SPATIAL: List[Layer] = [
    Layer("r50_stem_7x7s2", "resnet_stem", 1, 3, 64, 224, 224, 7, 2, 3),
    _c3("r50_3x3_64_56", "resnet_3x3", 64, 64, 56),
    _c3("r50_3x3_128_28", "resnet_3x3", 128, 128, 28),
    _c3("r50_3x3_256_14", "resnet_3x3", 256, 256, 14),
    _c3("r50_3x3_512_7", "resnet_3x3", 512, 512, 7),
    _c3("r50_3x3s2_128_56", "resnet_3x3", 128, 128, 56, stride=2),
    _c3("mb2_dw_32_112", "mbv2_dw", 32, 32, 112, groups=32),
    _c3("mb2_dw_144_56", "mbv2_dw", 144, 144, 56, groups=144),
    _c3("mb2_dw_192_28", "mbv2_dw", 192, 192, 28, groups=192),
    _c3("mb2_dw_384_14", "mbv2_dw", 384, 384, 14, groups=384),
    _c3("mb2_dw_960_7", "mbv2_dw", 960, 960, 7, groups=960),
    _c3("mb2_dws2_96_112", "mbv2_dw", 96, 96, 112, stride=2, groups=96),
    _c3("unet_3x3_3_64_256", "unet_3x3", 3, 64, 256),
    _c3("unet_3x3_64_256", "unet_3x3", 64, 64, 256),
    _c3("unet_3x3_128_128", "unet_3x3", 128, 128, 128),
    _c3("unet_3x3_256_64", "unet_3x3", 256, 256, 64),
    _c3("unet_3x3_512_32", "unet_3x3", 512, 512, 32),
    _c3("b8_r50_3x3_128_28", "batch8", 128, 128, 28, n=8),
    _c3("b8_mb2_dw_144_56", "batch8", 144, 144, 56, n=8, groups=144),
    _c3("dil2_3x3_256_28", "dilated", 256, 256, 28, dilation=2),
]

# A quick suite (about a minute with peers): one layer of each kind.
QUICK = ["r50_1x1_256_64_56", "r50_1x1_512_2048_7", "unet_head_64_21_256", "r50_3x3_128_28",
         "mb2_dw_144_56", "r50_stem_7x7s2"]

_BY_NAME: Dict[str, Layer] = {layer.name: layer for layer in POINTWISE + SPATIAL}

SUITES: Dict[str, List[Layer]] = {
    "quick": [_BY_NAME[name] for name in QUICK],
    "pointwise": POINTWISE,
    "spatial": SPATIAL,
    "resnet50": [la for la in POINTWISE + SPATIAL if la.group.startswith("resnet")],
    "mobilenetv2": [la for la in POINTWISE + SPATIAL if la.group.startswith("mbv2")],
    "unet": [la for la in POINTWISE + SPATIAL if la.group.startswith("unet")],
    "all": POINTWISE + SPATIAL,
    "conv1d": CONV1D,  # conv1d and transposed convolution (ops_suites.py)
    "transposed": TRANSPOSED,
}


def layer(name: str) -> Layer:
    return _BY_NAME[name]
