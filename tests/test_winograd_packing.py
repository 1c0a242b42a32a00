"""What a Winograd layer packs (csrc/winograd/winograd.h): the U of both tile sizes where the map is not known at
pack time (``fp.Conv2d``), the U of the one tile size a map runs where it is (a network's node layer packs at the
plan of each input shape, once per tile size used; a one-shot call), and a packing of one tile size serves
every map, the other size's maps running the tile size it holds. Results within the bound of issue 16 against
a float64 direct convolution (tests/test_winograd.py)."""
import threading

import numpy as np
import pytest

import fastpoint as fp
from fastpoint.backends import c as cback
from fastpoint.core.spec import make_spec
from fastpoint.network.ops_conv import NodeConv2d

from .conftest import run_in_threads
from .test_winograd import check_close, data, reference

needs_c = pytest.mark.skipif(cback.lib is None, reason="C extension not built")

BIG, SMALL = 24, 8  # 36 tiles of 4x4 (F(4x4)), 4 (fewer than 32: F(2x2))


def tile_of(name: str) -> int:
    return 4 if "_4x4__" in name else 2 if "_2x2__" in name else 0


@needs_c
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_node_layer_packs_the_tile_size_of_each_map_once(isa, layout):
    rng = np.random.default_rng(31)
    x_big, w, b = data(rng, 1, 20, 40, BIG, BIG, layout)
    x_small, _, _ = data(rng, 1, 20, 40, SMALL, SMALL, layout)
    node = NodeConv2d(w, b, padding=1, layout=layout, backend="c", algorithm="winograd")
    for x in (x_big, x_small, x_big, x_small):
        check_close(node(x), reference(x, w, b, 1, layout))
    names = sorted(key[0] for key in node._packed)
    assert [tile_of(n.split(":")[1]) for n in names] == [2, 4], names  # one packing per tile size
    both = fp.Conv2d(w, b, padding=1, layout=layout, backend="c", algorithm="winograd")
    check_close(both(x_small), reference(x_small, w, b, 1, layout))
    assert len(both._packed) == 1  # fp.Conv2d: one packing of both sets
    nbytes = {tile_of(n.split(":")[1]): node._packed[(n, np.dtype(np.float32))][1].buffer.nbytes for n in names}
    total = next(iter(both._packed.values()))[1].buffer.nbytes
    heads = nbytes[4] + nbytes[2] - total  # the two one-set packings hold one header pair more than both's
    assert 0 < heads <= 512
    # each set is n^2 positions of the same size: 36 for F(4x4), 16 for F(2x2); both sets alone minus one
    # header pair
    assert (nbytes[4] - heads) * 16 == (nbytes[2] - heads) * 36


@needs_c
def test_one_set_serves_the_other_tile_sizes_map(isa):
    """A packing of one tile size (made for one map) run on a map that picks the other: the set it holds runs."""
    rng = np.random.default_rng(32)
    backend = cback.CBackend()
    for pack_hw, run_hw in ((BIG, SMALL), (SMALL, BIG)):
        x, w, b = data(rng, 1, 16, 24, run_hw, run_hw, "NHWC")
        layer = fp.Conv2d(w, b, padding=1, layout="NHWC", backend="c", algorithm="winograd")._layer
        layer = layer.with_dtype(np.float32)
        pack_spec = make_spec(layer, (1, pack_hw, pack_hw, 16), w.shape)
        run_spec = make_spec(layer, x.shape, w.shape)
        assert tile_of(backend.kernel_name(pack_spec)) != tile_of(backend.kernel_name(run_spec))
        packed = backend.prepack(layer, w, spec=pack_spec)
        out = np.full((1, run_hw, run_hw, 24), np.nan, np.float32)
        backend.run(run_spec, packed, x, b, out)
        check_close(out, reference(x, w, b, 1, "NHWC"))


@needs_c
def test_concurrent_first_calls_pack_once(monkeypatch):
    rng = np.random.default_rng(33)
    x, w, b = data(rng, 2, 32, 32, 20, 20, "NHWC")
    node = NodeConv2d(w, b, padding=1, layout="NHWC", backend="c", algorithm="winograd")
    packs, lock, results = [], threading.Lock(), []
    real = cback.CBackend.prepack

    def counted(self, *args, **kw):
        with lock:
            packs.append(1)
        return real(self, *args, **kw)

    monkeypatch.setattr(cback.CBackend, "prepack", counted)
    barrier = threading.Barrier(4)

    def work():
        barrier.wait()
        y = node(x)
        with lock:
            results.append(y)

    run_in_threads(work, 4)
    assert len(packs) == 1 and len(node._packed) == 1
    ref = reference(x, w, b, 1, "NHWC")
    for y in results:
        check_close(y, ref)
        assert np.array_equal(y, results[0])
