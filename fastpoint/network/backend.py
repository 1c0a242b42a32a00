"""An ``onnx.backend.base.Backend`` for fastpoint, as ``onnxruntime.backend`` is for ONNX Runtime.

It lets onnx's own conformance machinery (``onnx.backend.test.BackendTest`` and the node test cases)
run against fastpoint::

    import onnx.backend.test
    from fastpoint.network.backend import FastpointBackend
    tests = onnx.backend.test.BackendTest(FastpointBackend, __name__)
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple, Union

import numpy as np
from onnx.backend.base import Backend, BackendRep

from . import load_onnx
from .network import Network


class FastpointRep(BackendRep):
    def __init__(self, net: Network) -> None:
        self.net = net

    def run(self, inputs: Union[Sequence[np.ndarray], Dict[str, np.ndarray], np.ndarray], **kwargs: Any) -> Tuple:
        names = [i.name for i in self.net.inputs]
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            feeds = dict(zip(names, inputs))
        result = self.net.run(feeds)
        return tuple(result[o.name] for o in self.net.outputs)


class FastpointBackend(Backend):
    @classmethod
    def is_compatible(cls, model, device: str = "CPU", **kwargs: Any) -> bool:
        return device.upper() == "CPU"

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs: Any) -> FastpointRep:
        super().prepare(model, device, **kwargs)
        return FastpointRep(load_onnx(model, backend=kwargs.get("backend", "auto")))

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs: Any) -> Tuple:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs: Any):
        raise NotImplementedError("fastpoint runs whole models: use prepare() or run_model()")
