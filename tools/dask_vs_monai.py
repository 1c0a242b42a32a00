"""fastpoint.dask.run against MONAI's ``sliding_window_inference`` on the same model and image.

Both tile a large image; MONAI blends overlapping windows (``overlap``, ``mode`` gaussian or constant), so
its result differs from the whole-image network's near window borders; fastpoint's tiles carry the halo
the graph needs and give the whole-image result. The model is tools/export_models.py's MONAI BasicUNet
(same seed), run by torch for MONAI (against torch on the whole image) and exported with free H and W
for fastpoint (against fastpoint on the whole image). Prints both differences and both times (each on
``--threads`` cores: torch threads for MONAI, dask tasks of one kernel thread for fastpoint) and writes
bench/results/dask_vs_monai-<UTC time>.json.

    nice -n 10 python tools/dask_vs_monai.py --size 2048 --roi 1024 --chunk 1024
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _stats(got: np.ndarray, ref: np.ndarray) -> dict:
    d = np.abs(got.astype(np.float64) - ref)
    return {"max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()),
            "max_abs_ref": float(np.abs(ref).max()), "pixels_off_1e-3": float((d.max(axis=1) > 1e-3).mean()),
            "argmax_disagree": float((got.argmax(axis=1) != ref.argmax(axis=1)).mean())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--roi", type=int, default=1024, help="MONAI window size")
    p.add_argument("--overlap", type=float, default=0.25, help="MONAI window overlap (its default)")
    p.add_argument("--chunk", type=int, default=1024, help="fastpoint output chunk size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", default="/tmp/dask_basicunet_free.onnx", help="made by dask_scaling.py --export "
                                                                             "if missing")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "bench", "results"))
    args = p.parse_args(argv)

    import dask.array as da
    import torch
    from dask_scaling import export_free, write_result
    from export_models import build
    from monai.inferers import sliding_window_inference

    import fastpoint as fp
    import fastpoint.dask as fpd

    if not os.path.exists(args.model):
        export_free(args.model)
    torch.set_num_threads(args.threads)
    model = build("basicunet")
    x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
    xt = torch.from_numpy(x)
    result = {"size": args.size, "roi": args.roi, "overlap": args.overlap, "chunk": args.chunk,
              "threads": args.threads, "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with torch.no_grad():
        t0 = time.perf_counter()
        whole_t = model(xt).numpy()
        result["torch_whole_seconds"] = time.perf_counter() - t0
        for mode in ("gaussian", "constant"):
            t0 = time.perf_counter()
            sw = sliding_window_inference(xt, (args.roi, args.roi), 1, model, overlap=args.overlap, mode=mode).numpy()
            result[f"monai_{mode}_seconds"] = time.perf_counter() - t0
            result[f"monai_{mode}"] = _stats(sw, whole_t)
            print(f"MONAI sliding_window_inference ({mode}, roi {args.roi}, overlap {args.overlap}): "
                  f"{result[f'monai_{mode}_seconds']:.1f} s, vs torch on the whole image: {result[f'monai_{mode}']}")
    del whole_t
    net = fp.load_onnx(args.model)
    fp.set_num_threads(1)
    whole_fp = net(x)
    y = fpd.run(net, da.from_array(x, chunks=(1, 3, args.chunk, args.chunk)))
    y.compute(scheduler="threads", num_workers=args.threads)  # first run: plans, packing, arenas
    t0 = time.perf_counter()
    tiled = y.compute(scheduler="threads", num_workers=args.threads)
    result["fastpoint_tiled_seconds"] = time.perf_counter() - t0
    result["fastpoint_tiled"] = _stats(tiled, whole_fp)
    result["fastpoint_bit_equal"] = bool(np.array_equal(tiled, whole_fp))
    print(f"fastpoint.dask.run (chunk {args.chunk}, {args.threads} tasks at once): "
          f"{result['fastpoint_tiled_seconds']:.1f} s, vs fastpoint on the whole image: {result['fastpoint_tiled']}, "
          f"bit equal: {result['fastpoint_bit_equal']}")
    print(f"written {write_result(args.out, 'dask_vs_monai', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
