"""The lean one-shot path (core/callplan.py ``remember`` / ``CallPlan.matches``, backends/c.py ``bind_call``,
csrc/call_entry.c): a cached parse keyed on type codes and checked for what the key leaves out, the per-call
memory checks in C, and the thread rule that keeps calls too small for a split on the calling thread."""
from __future__ import annotations

import numpy as np
import pytest

import fastpoint as fp
from fastpoint import api
from fastpoint.backends import c as cbackend
from fastpoint.core import callplan
from fastpoint.core.spec import make_layer, make_spec
from fastpoint.core.threads import thread_limit

from .conftest import int_array, run_in_threads

needs_c = pytest.mark.skipif(not cbackend.CBackend().available(), reason="C extension not built")


def _want(x, w, b=None, **kw):
    return fp.conv2d(x, w, b, backend="numpy", **kw)


@needs_c
def test_entry_refuses_misaligned_and_overlapping_memory_untouched():
    """fp_call_once returns FP_CALL_EXACT without writing y for a misaligned pointer or a y whose bytes
    meet x, w or bias, and runs otherwise."""
    ffi, lib = cbackend.ffi, cbackend.lib
    rng = np.random.default_rng(1)
    x, w, b = int_array(rng, (1, 4, 6, 6)), int_array(rng, (5, 4, 3, 3)), int_array(rng, (5,))
    spec = make_spec(make_layer(w, 1, 1, 1, 1, "NCHW", None), x.shape, w.shape)
    p = cbackend._problem_for(spec)
    fb = ffi.from_buffer
    y = np.full((1, 5, 6, 6), 7.0, np.float32)
    assert lib.fp_call_once(p, 0, fb("float[]", x), fb("float[]", w), fb("float[]", b), fb("float[]", y), 1) == 0
    np.testing.assert_array_equal(y, _want(x, w, b, padding=1))
    raw = np.zeros(y.nbytes + 4, np.uint8)
    odd = ffi.cast("float *", ffi.from_buffer(raw)) + 0  # aligned start ...
    odd = ffi.cast("float *", ffi.cast("char *", odd) + 1)  # ... moved by one byte
    big = np.full(2000, 7.0, np.float32)
    for args in ((odd, fb("float[]", w), fb("float[]", b), fb("float[]", y)),
                 (fb("float[]", x), fb("float[]", w), fb("float[]", b), odd),
                 (fb("float[]", big[:144]), fb("float[]", w), fb("float[]", b), fb("float[]", big[100:280])),
                 (fb("float[]", x), fb("float[]", big[179:]), fb("float[]", b), fb("float[]", big[:180])),
                 (fb("float[]", x), fb("float[]", w), fb("float[]", big[175:180]), fb("float[]", big[:180]))):
        before = big.copy()
        assert lib.fp_call_once(p, 0, *args, 1) == cbackend.CALL_EXACT
        np.testing.assert_array_equal(big, before)
    # ranges that touch without sharing a byte are no overlap
    assert lib.fp_call_once(p, 0, fb("float[]", big[180:324]), fb("float[]", w), fb("float[]", b),
                                fb("float[]", big[:180]), 1) == 0


def test_dtype_of_another_byte_order_is_not_the_cached_plan(backend):
    """The key holds dtype type codes ('f' for both byte orders): a big-endian weight after a native one must
    be cast, not read as native bytes; a big-endian x still raises."""
    rng = np.random.default_rng(2)
    x, w, b = int_array(rng, (1, 3, 6, 6)), int_array(rng, (4, 3, 3, 3)), int_array(rng, (4,))
    want = _want(x, w, b, padding=1)
    for _ in range(2):
        np.testing.assert_array_equal(fp.conv2d(x, w, b, padding=1, backend=backend), want)
        np.testing.assert_array_equal(fp.conv2d(x, w.astype(">f4"), b.astype(">f4"), padding=1, backend=backend),
                                      want)
        with pytest.raises(TypeError, match="x must be float32 or float64"):
            fp.conv2d(x.astype(">f4"), w, b, padding=1, backend=backend)


def test_numbers_equal_to_cached_ones_but_invalid_still_raise(backend):
    x, w = np.ones((1, 2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32)
    for good, bad, name in ((1, True, "stride"), (1, 1.0, "stride"), (1, np.float64(1.0), "dilation"),
                            (1, False, "groups")):
        kw_good, kw_bad = {name: good}, {name: bad}
        fp.conv2d(x, w, backend=backend, **kw_good)
        fp.conv2d(x, w, backend=backend, **kw_good)
        with pytest.raises(TypeError, match=name):
            fp.conv2d(x, w, backend=backend, **kw_bad)
    fp.conv2d(x, w, stride=np.int64(1), backend=backend)  # valid, equal to 1: parsed, same result
    np.testing.assert_array_equal(fp.conv2d(x, w, stride=np.int64(2), backend=backend), _want(x, w, stride=2))


def test_conv1x1_cached_on_either_weight_shape(backend):
    """conv1x1 keeps its own plans, on the weight as given: (Cout, Cin) and (Cout, Cin, 1, 1) give the same
    result, bad shapes and overlapping outputs still raise naming the argument."""
    rng = np.random.default_rng(3)
    x, w, b = int_array(rng, (2, 6, 5, 5)), int_array(rng, (4, 6)), int_array(rng, (4,))
    want = _want(x, w[:, :, None, None], b)
    for _ in range(3):
        np.testing.assert_array_equal(fp.conv1x1(x, w, b, backend=backend), want)
        np.testing.assert_array_equal(fp.conv1x1(x, w[:, :, None, None], b, backend=backend), want)
        np.testing.assert_array_equal(fp.conv1x1(x[1], w, b, backend=backend), want[1])
        np.testing.assert_array_equal(fp.conv1x1(x, np.asfortranarray(w), b, backend=backend), want)
    with pytest.raises(ValueError, match=r"conv1x1 weight must be .* got shape \(4, 6, 3, 3\)"):
        fp.conv1x1(x, np.ones((4, 6, 3, 3), np.float32), backend=backend)
    with pytest.raises(TypeError, match="stride"):
        fp.conv1x1(x, w, b, stride=True, backend=backend)
    buf = np.zeros(400, np.float32)
    with pytest.raises(ValueError, match="overlaps weight"):
        fp.conv1x1(x, buf[:24].reshape(4, 6), b, backend=backend, out=buf[:200].reshape(2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"out must have shape \(2, 4, 5, 5\)"):
        fp.conv1x1(x, w, b, backend=backend, out=np.empty((2, 4, 5, 4), np.float32))


def test_subclasses_and_array_likes_take_the_full_parse(backend):
    rng = np.random.default_rng(4)
    x, w = int_array(rng, (1, 3, 5, 5)), int_array(rng, (2, 3, 3, 3))
    want = _want(x, w, padding=1)
    fp.conv2d(x, w, padding=1, backend=backend)

    class Sub(np.ndarray):
        pass

    np.testing.assert_array_equal(fp.conv2d(x.view(Sub), w, padding=1, backend=backend), want)
    np.testing.assert_array_equal(fp.conv2d(x.tolist(), w, padding=1, backend=backend), want)
    np.testing.assert_array_equal(fp.conv2d(x, w.tolist(), padding=1, backend=backend), want)
    with pytest.raises(TypeError, match="stride"):
        fp.conv2d(x, w, padding=1, stride=[1, 1.5], backend=backend)


def test_a_repeat_conv1x1_call_skips_the_parse(backend, monkeypatch):
    x, w = np.ones((1, 2, 5, 5), np.float32), np.ones((3, 2), np.float32)
    want = fp.conv1x1(x, w, backend=backend)

    def parse(*a, **k):
        raise AssertionError("the full parse ran on a repeat call")

    monkeypatch.setattr(api, "_parse_one_shot", parse)
    np.testing.assert_array_equal(fp.conv1x1(x, w, backend=backend), want)
    with pytest.raises(AssertionError):
        fp.conv1x1(x, w, stride=2, backend=backend)


@needs_c
def test_thread_rule_keeps_small_calls_on_one_thread(monkeypatch):
    """call_threads: one thread where the layer's FMA time at peak is below WAKES_PER_SPLIT pool wakes, all of
    them above it; the rates are measured (positive) and the rule is what the problem struct gets."""
    wake, flops = cbackend.machine_rates(2)
    assert wake > 0 and flops > 0
    monkeypatch.setattr(cbackend, "WAKES_PER_SPLIT", 24.0)  # the package's (conftest.py splits every call)
    monkeypatch.setattr(cbackend, "machine_rates", lambda threads: (100.0, 200.0))
    monkeypatch.setattr(cbackend, "_problems", {})
    w = np.ones((16, 16, 3, 3), np.float32)
    tiny = make_spec(make_layer(w, 1, 1, 1, 1, "NCHW", None), (1, 16, 8, 8), w.shape)
    big = make_spec(make_layer(w, 1, 1, 1, 1, "NCHW", None), (1, 16, 64, 64), w.shape)
    # tiny: 295 kflop at 200 flop/ns = 1.5 us < 24 wakes of 100 ns; big: 94 us
    assert cbackend.one_thread_ns(tiny, 200.0) < cbackend.WAKES_PER_SPLIT * 100.0 < cbackend.one_thread_ns(big, 200.0)
    assert cbackend.call_threads(tiny, 2) == 1
    assert cbackend._problem_for(tiny).num_threads == 1
    assert cbackend.call_threads(big, 1) == 1
    if cbackend.lib.fp_max_threads() >= 2:
        assert cbackend.call_threads(big, 2) == 2
        with thread_limit(2):
            assert cbackend._problem_for(big).num_threads == 2


@pytest.mark.parametrize("rule", [0.0, 24.0])
def test_small_and_large_calls_at_several_thread_counts_match(backend, rule, monkeypatch):
    """The thread rule changes how a call is split, never its result (one-shot and prepacked alike), with the
    rule (the package's factor) and without it (every call split)."""
    monkeypatch.setattr(cbackend, "WAKES_PER_SPLIT", rule)
    monkeypatch.setattr(cbackend, "_problems", {})
    monkeypatch.setattr(callplan, "_ONE_SHOT", {})  # plans hold their runner's last problem struct
    rng = np.random.default_rng(5)
    cases = [((1, 16, 8, 8), (16, 16, 3, 3), dict(padding=1)), ((1, 32, 20, 20), (32, 32, 3, 3), dict(padding=1)),
             ((1, 48, 7, 7), (48, 1, 3, 3), dict(padding=1, groups=48)), ((1, 64, 14, 14), (64, 64, 1, 1), {})]
    for xs, ws, kw in cases:
        x, w, b = int_array(rng, xs), int_array(rng, ws), int_array(rng, ws[:1])
        want = _want(x, w, b, **kw)
        for threads in (1, 2, 3):
            with thread_limit(threads):
                np.testing.assert_array_equal(fp.conv2d(x, w, b, backend=backend, **kw), want)
                np.testing.assert_array_equal(fp.Conv2d(w, b, backend=backend, **kw)(x), want)


def test_concurrent_conv1x1_calls_with_their_own_weights(backend):
    rng = np.random.default_rng(6)
    x = int_array(rng, (1, 32, 7, 7))
    weights = [(int_array(rng, (24, 32)), int_array(rng, (24,))) for _ in range(4)]
    wants = [_want(x, w[:, :, None, None], b) for w, b in weights]
    ids = iter(range(4))
    errors = []

    def work():
        me = next(ids)
        out = np.empty_like(wants[me])
        for i in range(20):
            w, b = weights[me]
            got = fp.conv1x1(x, w, b, backend=backend, out=out if i % 2 else None)
            if not np.array_equal(got, wants[me]):
                errors.append((me, i))

    run_in_threads(work, 4)
    assert not errors


def test_remember_keeps_only_plain_calls(monkeypatch):
    monkeypatch.setattr(callplan, "_ONE_SHOT", {})
    x, w = np.ones((1, 2, 4, 4), np.float32), np.ones((3, 2, 1, 1), np.float32)
    fp.conv2d(x, w, stride=np.int64(1))
    fp.conv2d(x, w, activation=("clip", 0.0, 1.0))
    assert not callplan._ONE_SHOT
    fp.conv2d(x, w, stride=(1, 1))
    assert len(callplan._ONE_SHOT) == 1


@needs_c
def test_conv1d_one_shot_takes_the_entry_where_the_2d_kernels_run():
    """conv1d's stride-1 rows run the 2-d kernels, so their one-shot plans get the C entry; the layers conv1d's
    own kernels take (strided NCL GEMM, direct rows) keep their runners.  Either way: the reference's result,
    copies for strided views, out checks naming the argument."""
    from fastpoint.backends import c_lowered

    rng = np.random.default_rng(7)
    x, w, b = int_array(rng, (2, 24, 40)), int_array(rng, (24, 24, 3)), int_array(rng, (24,))
    for kw, entry in ((dict(padding=1), True), (dict(stride=2), False)):
        want = fp.conv1d(x, w, b, backend="numpy", **kw)
        for _ in range(2):
            np.testing.assert_array_equal(fp.conv1d(x, w, b, **kw), want)
        plans = [p for k, p in callplan._ONE_SHOT.items() if k[0] == "conv1d" and k[1] == x.shape and p is not None
                 and k[-1] == "auto" and p.spec.layer.stride[1] == kw.get("stride", 1)]
        assert plans and all((p.fast is not None) == entry for p in plans), kw
        np.testing.assert_array_equal(fp.conv1d(np.ascontiguousarray(x[:, :, ::-1])[:, :, ::-1], w, b, **kw), want)
        np.testing.assert_array_equal(fp.conv1d(np.asfortranarray(x), w, b, **kw), want)
        out = np.empty_like(want)
        assert fp.conv1d(x, w, b, out=out, **kw) is out
        np.testing.assert_array_equal(out, want)
        buf = np.zeros(x.size + 100, np.float32)
        xb = buf[:x.size].reshape(x.shape)
        xb[...] = x
        with pytest.raises(ValueError, match="overlaps x"):
            fp.conv1d(xb, w, b, out=buf[10:10 + want.size].reshape(want.shape), **kw)
    assert c_lowered.Conv1dGemmBackend().once_runs_conv(plans[0].spec) is False


def test_oneshot_times_tool_runs(capsys, monkeypatch):
    """tools/oneshot_times.py on the tiny layer, one round, with the pool column (a smoke test of its
    contenders: each is checked against the layer's result before timing)."""
    import importlib.util
    import pathlib
    import sys

    path = pathlib.Path(__file__).resolve().parents[1] / "tools" / "oneshot_times.py"
    spec = importlib.util.spec_from_file_location("oneshot_times", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setattr(tool, "_batch", lambda f: 2)
    monkeypatch.setattr(sys, "argv", ["oneshot_times", "--layers", "tiny_16_3x3_8", "--threads", "1,2",
                                      "--rounds", "1", "--wake"])
    torch = sys.modules.get("torch")
    saved = fp.get_num_threads(), None if torch is None else torch.get_num_threads()
    try:
        tool.main()
    finally:
        fp.set_num_threads(saved[0])
        torch = sys.modules.get("torch")
        if torch is not None and saved[1] is not None:
            torch.set_num_threads(saved[1])
    text = capsys.readouterr().out
    assert "| tiny_16_3x3_8 | 1 |" in text and "| tiny_16_3x3_8 | 2 |" in text
    assert "pool: process/caller CPU" in text
