"""Every fast backend equals the reference on the full sweep of the contract (integer data: exact)."""
import pytest

from fastpoint.core.check import full_cases, run_case

CASES = list(full_cases())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_backend_equals_reference(backend, case):
    ok, diff = run_case(case, backend)
    assert ok, f"{backend} differs from the reference on {case.name}: max |diff| = {diff}"
