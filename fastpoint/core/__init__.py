"""The core every backend and op shares: argument checks and the problem description (``spec``), the call
plan (``callplan``: kept by a layer, or used once by a one-shot call), the thread budget (``threads``),
NaN/Inf in padding (``nonfinite``), image arguments of the ops (``image_args``), the correctness sweep
(``check``) and what the machine is (``machine``: ISA and cache sizes)."""
