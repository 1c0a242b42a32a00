"""Segment an image larger than memory with a trained ONNX network: a thin use of ``fastpoint segment``.

Any fully convolutional network exported to ONNX with free H and W works (a U-Net for microscopy,
pathology or remote sensing); for example MONAI's BasicUNet::

    import torch; from monai.networks.nets import BasicUNet
    model = BasicUNet(spatial_dims=2, in_channels=3, out_channels=2, norm="batch").eval()  # + your weights
    axes = {0: "N", 2: "H", 3: "W"}
    torch.onnx.export(model, torch.randn(1, 3, 256, 256), "unet.onnx", input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": axes, "output": axes})

Then (``--create-synthetic`` writes a random RGB test image first)::

    python examples/segment_large_image.py unet.onnx img.zarr classes.zarr --create-synthetic 4096 \\
        --workers 2 --chunk 1024

which is ``fastpoint segment unet.onnx img.zarr classes.zarr --workers 2 --chunk 1024``: the image is
read lazily, every 1024-pixel chunk of the class map is computed by one task that runs the whole network
on the chunk plus the halo the graph needs (``fastpoint.dask.run``, exact: the class map is the one the
network gives on the whole image in memory), on a LocalCluster of 2 worker processes with one thread
each, and written to zarr. ``--check-in-memory`` (small images) also runs the network on the whole image
and checks that the two are equal.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fastpoint.network.segment import segment  # noqa: E402


def create_synthetic(path: str, size: int, chunk: int = 1024) -> None:
    """A random (size, size, 3) uint8 RGB image in zarr, written chunk by chunk."""
    import dask.array as da

    img = da.random.default_rng(0).integers(0, 256, (size, size, 3), chunks=(chunk, chunk, 3), dtype=np.uint8)
    da.to_zarr(img, path, overwrite=True)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--create-synthetic", type=int, default=None, metavar="SIZE", help="write a random RGB image first")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--scheduler", default=None)
    p.add_argument("--raw", action="store_true", help="the network's output instead of the class map")
    p.add_argument("--memory-limit", default="2GiB")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--check-in-memory", action="store_true", help="compare with the whole image in memory")
    args = p.parse_args(argv)
    if args.create_synthetic:
        create_synthetic(args.input, args.create_synthetic)
    report = segment(args.model, args.input, args.output, workers=args.workers, chunk=args.chunk,
                     scheduler=args.scheduler, argmax=not args.raw, memory_limit=args.memory_limit,
                     progress=not args.no_progress)
    print(f"{report['output_shape']} in {report['seconds']:.1f} s ({report['mpixel_per_s']:.2f} Mpixel/s), "
          f"halo {report['halo']}, peak RSS per worker {[round(v) for v in report['peak_rss_mib']]} MiB")
    if args.check_in_memory:
        import dask.array as da

        import fastpoint as fp

        img = da.from_zarr(args.input).compute()
        x = (img.transpose(2, 0, 1)[None].astype(np.float32) * np.float32(1 / 255))
        ref = fp.load_onnx(args.model)(x)[0]
        ref = ref if args.raw else ref.argmax(axis=0).astype(np.uint8)
        got = da.from_zarr(args.output).compute()
        report["equal_to_in_memory"] = bool(np.array_equal(got, ref))
        print(f"equal to the in-memory result: {report['equal_to_in_memory']}")
    return report


if __name__ == "__main__":
    main()
