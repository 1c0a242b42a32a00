"""The op registry: one small class per ONNX op type, looked up by name when a model is loaded.

An op class is built once per node at load time (``__init__`` reads and checks the attributes) and
knows two things about its node:

* ``infer(shapes, dtypes, values)`` - the output shapes and dtypes for concrete input shapes, or
  ``None`` where they depend on a value not known when the plan is made (then the node runs
  "dynamic": it allocates its outputs itself and what follows is planned at run time too);
* ``run(inputs, outs)`` - the computation on NumPy arrays; ``outs`` holds preallocated arrays of the
  inferred shapes (views of the plan's arena) for ops with ``writes_out = True``, else ``None``.

Anything the class does not support raises :class:`NotImplementedError` naming the op type, the node
and the attribute at load time, so an unsupported model never gives a wrong answer.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

import numpy as np

Shape = Tuple[int, ...]
_REGISTRY: Dict[str, Type[Op]] = {}


def register(*op_types: str) -> Callable[[Type[Op]], Type[Op]]:
    """Class decorator: the class runs nodes of these op types (default ONNX domain)."""

    def deco(cls: Type[Op]) -> Type[Op]:
        for t in op_types:
            _REGISTRY[t] = cls
        return cls

    return deco


def op_class(op_type: str, domain: str, node_name: str) -> Type[Op]:
    if domain not in ("", "ai.onnx"):
        raise NotImplementedError(f"op {op_type} of domain {domain!r} (node {node_name!r}) is not supported")
    cls = _REGISTRY.get(op_type)
    if cls is None:
        raise NotImplementedError(f"op type {op_type!r} (node {node_name!r}) is not supported by fastpoint")
    return cls


def supported_ops() -> List[str]:
    """The op types fastpoint's network runner knows, sorted."""
    return sorted(_REGISTRY)


class Op:
    """Base of the op classes; see the module docstring."""

    #: attribute name -> default (``REQUIRED`` for none); any other attribute fails at load
    attributes: Dict[str, Any] = {}
    #: ``run`` writes into the ``outs`` it is given (so the plan can give it arena buffers)
    writes_out = False
    #: the output may be the same buffer as input 0 (elementwise, same shape and dtype)
    in_place = False
    #: the output is a view of input 0 (Reshape, Flatten, ...): it shares input 0's memory
    view_of_input = False

    def __init__(self, op_type: str, name: str, attrs: Dict[str, Any], opset: int, n_inputs: int,
                 n_outputs: int) -> None:
        self.op_type, self.name, self.opset = op_type, name, opset
        self.n_inputs, self.n_outputs = n_inputs, n_outputs
        for key in attrs:
            if key not in self.attributes:
                raise self.unsupported(f"attribute {key!r}")
        self.attrs = {**self.attributes, **attrs}
        for key, value in self.attrs.items():
            if value is REQUIRED:
                raise ValueError(f"{op_type} node {name!r}: attribute {key!r} is required")
        self.fused: List[str] = []  # what the plan folded into this node (shown by print(net))
        self.setup()

    def setup(self) -> None:
        """Check and normalize ``self.attrs`` (subclasses)."""

    def unsupported(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"{self.op_type} node {self.name!r}: {what} is not supported by fastpoint")

    # -- planning --------------------------------------------------------------------------
    def infer(self, shapes: Sequence[Optional[Shape]], dtypes: Sequence[Optional[np.dtype]],
              values: Sequence[Optional[np.ndarray]]) -> Optional[List[Tuple[Shape, np.dtype]]]:
        """Output (shape, dtype) pairs; the default: same as input 0 (elementwise unary ops)."""
        if shapes[0] is None:
            return None
        return [(shapes[0], dtypes[0])]

    def needs_values(self) -> Sequence[int]:
        """Inputs whose values (not only shapes) the output shape depends on."""
        return ()

    #: floating-point operations per output element in the default :meth:`flops` (0: moves data only)
    flops_per_output = 1

    def flops(self, in_shapes: Sequence[Shape], out_shapes: Sequence[Shape]) -> int:
        """Floating-point operations of one run (multiply-add = 2), for the layer table."""
        return self.flops_per_output * int(sum(np.prod(s, dtype=np.int64) for s in out_shapes))

    def kernel(self, in_shapes: Sequence[Shape]) -> str:
        """What runs the node (the kernel name for convolutions), for the layer table."""
        return "numpy"

    # -- running ---------------------------------------------------------------------------
    def run(self, inputs: Sequence[Optional[np.ndarray]], outs: Optional[Sequence[np.ndarray]]) -> List[np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__}.run")  # every registered class defines it


REQUIRED = object()


def deliver(result: np.ndarray, outs: Optional[Sequence[np.ndarray]]) -> List[np.ndarray]:
    """An op's one result: copied into the buffer the plan gave (``outs``), else as a contiguous array."""
    if outs:
        np.copyto(outs[0], result)
        return [outs[0]]
    result = np.asarray(result)  # (np.ascontiguousarray would make a 0-d result 1-d)
    return [result if result.flags.c_contiguous else result.copy(order="C")]


def int_list(value) -> List[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def broadcast_shape(*shapes: Shape) -> Shape:
    return tuple(np.broadcast_shapes(*shapes))


def normalize_axis(op: Op, axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"{op.op_type} node {op.name!r}: axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0
