"""The command line around networks: ``fastpoint run`` and ``fastpoint bench --model``."""

import numpy as np
import pytest

from fastpoint.cli import main

from .onnx_graphs import bn_node, bn_params, helper, model


def _model_file(tmp_path, rng):
    inits = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), **bn_params(rng, 4)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), bn_node("c", "n"),
             helper.make_node("Relu", ["n"], ["y"])]
    path = tmp_path / "m.onnx"
    path.write_bytes(model(nodes, [("x", [1, 3, "H", "W"])], [("y", None)], inits).SerializeToString())
    return path


def test_run_writes_the_output(tmp_path, capsys):
    import fastpoint as fp

    rng = np.random.default_rng(0)
    path = _model_file(tmp_path, rng)
    x = rng.standard_normal((1, 3, 10, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(path), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
                 "--summary"]) == 0
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_array_equal(y, fp.load_onnx(path)(x))
    out = capsys.readouterr().out
    assert "y: (1, 4, 10, 12) float32" in out and "BatchNormalization+Relu" in out
    assert main(["run", str(path), "--input", f"x={tmp_path / 'x.npy'}"]) == 0  # named input, no output file
    assert "max" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no input named 'z'"):
        main(["run", str(path), "--input", f"z={tmp_path / 'x.npy'}"])


def test_bench_model_table_and_profile(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(1)
    path = _model_file(tmp_path, rng)
    assert main(["bench", "--model", str(path), "--peers", "onnxruntime,torch", "--threads", "1",
                 "--input-shape", "1,3,16,16", "--rounds", "3", "--profile", "--memory"]) == 0
    out = capsys.readouterr()
    assert "fastpoint ms" in out.out and "onnxruntime ms" in out.out and "x best peer" in out.out
    assert "peak RSS MiB" in out.out and "planned peak activations" in out.out
    assert "load + first inference" in out.out
    assert "per-op profile" in out.out and "Conv" in out.out and "%peak" in out.out
    assert "skipping peer torch" in out.err


def test_bench_model_algorithms_alternate(tmp_path, capsys):
    """``--algorithm winograd,auto`` with --model: one fastpoint contender per algorithm, each with its error."""
    pytest.importorskip("onnxruntime")
    path = _model_file(tmp_path, np.random.default_rng(2))
    assert main(["bench", "--model", str(path), "--peers", "onnxruntime", "--threads", "1", "--algorithm",
                 "winograd,auto", "--input-shape", "1,3,16,16", "--rounds", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "fastpoint:winograd ms" in lines[1] and "fastpoint ms" in lines[1] and "onnxruntime ms" in lines[1]
    assert lines[3].count("e-") + lines[3].count("e+") == 2  # max|fp-ORT|/max|ORT| of both contenders
