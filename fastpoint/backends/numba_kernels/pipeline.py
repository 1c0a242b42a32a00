"""A Numba compiler pipeline with one extra clean-up pass, for kernels outside a ``prange`` loop.

Numba's IR-level inlining (``inline="always"``, used by every small helper here) leaves chains of
variable copies behind, including copies of arrays, each lowered with reference-count updates.
Inside a ``prange`` loop the parfor passes remove them (copy propagation and dead-code removal);
without ``parallel=True`` nothing does, and the depthwise NCHW kernel, whose per-plane loop runs
few vector operations per helper call on 7x7 to 28x28 maps, ran 2-3x slower (0.32-0.45 against
0.12 ms for mb2_dw_960_7 at one thread).  This pipeline runs the same clean-up
(``numba.core.ir_utils.simplify``) right after typing, without the parallel passes (which would
also start Numba's thread pool whenever a cached kernel is loaded).
"""

from __future__ import annotations

from numba.core import ir_utils
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.compiler_machinery import FunctionPass, register_pass
from numba.core.typed_passes import InlineOverloads


@register_pass(mutates_CFG=True, analysis_only=False)
class CopyPropagation(FunctionPass):
    _name = "fastpoint_copy_propagation"

    def __init__(self) -> None:
        FunctionPass.__init__(self)

    def run_pass(self, state) -> bool:
        ir_utils.simplify(state.func_ir, state.typemap, state.calltypes, {})
        return True


class SimplifyingCompiler(CompilerBase):
    """Numba's nopython pipeline plus :class:`CopyPropagation` after the overload inlining."""

    def define_pipelines(self):
        pm = DefaultPassBuilder.define_nopython_pipeline(self.state)
        pm.add_pass_after(CopyPropagation, InlineOverloads)
        pm.finalize()
        return [pm]
