"""fastpoint: hand-written CPU convolution kernels for NumPy arrays.

>>> import numpy as np, fastpoint as fp
>>> x = np.random.rand(1, 64, 56, 56).astype(np.float32)
>>> w = np.random.rand(256, 64).astype(np.float32)
>>> y = fp.conv1x1(x, w)                       # (1, 256, 56, 56): W @ X at every pixel
"""

from ._version import __version__
from .api import Conv2d, conv1x1, conv2d
from .backends import backends
from .backends.kernel_table import kernels
from .conv1d import Conv1d, conv1d
from .conv_transpose import ConvTranspose1d, ConvTranspose2d, conv_transpose1d, conv_transpose2d
from .core.epilogue import Activation
from .core.threads import get_num_threads, set_num_threads
from .network import Network, load_onnx
from .ops.interpolate import interpolate
from .ops.pooling import avg_pool2d, max_pool2d
from .ops.upsample import upsample

__all__ = ["Activation", "Conv2d", "__version__", "backends", "conv1x1", "conv2d", "get_num_threads", "kernels",
           "set_num_threads", "max_pool2d", "avg_pool2d", "upsample", "Conv1d", "conv1d", "ConvTranspose1d",
           "ConvTranspose2d", "conv_transpose1d", "conv_transpose2d", "interpolate", "Network", "load_onnx"]
