"""The layer table ``print(net)`` shows: one row per step of the plan."""

from __future__ import annotations

from typing import Optional

from .graph import Graph
from .plan import Plan


def _shapes(shapes) -> str:
    return ", ".join("x".join(str(d) for d in s) if s is not None else "?" for s in shapes if s is not None) or "-"


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def layer_table(graph: Graph, plan: Optional[Plan]) -> str:
    lines = []
    if plan is None:
        lines.append(f"fastpoint.Network: {len(graph.nodes)} nodes (no plan yet: free input dimensions; run it "
                     "or call net.plan(inputs))")
        lines += [f"  {n.op.op_type:<20} {n.name}" + (f"  [+{' +'.join(n.op.fused)}]" if n.op.fused else "")
                  for n in graph.nodes]
        return "\n".join(lines)
    rows = [("#", "op", "node", "inputs", "output", "MFLOP", "kernel", "fused")]
    total = 0
    for i, step in enumerate(plan.steps):
        op = step.node.op
        known = all(s is not None for s in step.in_shapes if s is not None) and all(
            s is not None for s in step.out_shapes)
        flops = op.flops(step.in_shapes, step.out_shapes) if known and step.out_shapes[0] is not None else 0
        total += flops
        kernel = op.kernel(step.in_shapes) if step.in_shapes and step.in_shapes[0] is not None else "?"
        rows.append((str(i), op.op_type, step.node.name[:32], _shapes(step.in_shapes[:1]), _shapes(step.out_shapes),
                     f"{flops / 1e6:.1f}", kernel, "+".join(op.fused)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"{len(plan.steps)} steps ({plan.folded} nodes folded at plan time), {total / 1e9:.2f} GFLOP, "
                 f"layout {plan.layout}, {plan.concat_in_place} Concat inputs in place, "
                 f"arena {_mb(plan.arena_bytes)}, peak activations {_mb(plan.peak_bytes)}")
    return "\n".join(lines)
