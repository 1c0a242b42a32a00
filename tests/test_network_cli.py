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


def test_bench_model_pauses_between_samples_at_two_threads(tmp_path, monkeypatch):
    """At 2+ threads every sample waits for the previous contender's spinning pool to sleep (the layer
    benches' pause); at 1 thread there is no pool and no pause."""
    from fastpoint.bench import model as bench_model_mod
    from fastpoint.bench import timing
    from fastpoint.bench.runner import Settings

    path = _model_file(tmp_path, np.random.default_rng(2))
    gaps = []

    def fake_alternate(contenders, rounds=7, sample_s=0.05, max_total_s=20.0, gap_s=0.0):
        gaps.append(gap_s)
        return {name: [1e-3] for name in contenders}

    monkeypatch.setattr(timing, "alternate", fake_alternate)
    rows = bench_model_mod.bench_model(str(path), [], [1, 2], shape=(1, 3, 8, 8), rounds=1)
    assert [r["threads"] for r in rows] == [1, 2]
    assert gaps == [0.0, Settings.gap_s] and Settings.gap_s > 0


def test_bench_model_repeat_takes_medians_of_passes(tmp_path, monkeypatch):
    """``repeat`` passes: each cell is the median of the passes' medians, the speed-up the median of the
    per-pass ratios (not the ratio of the medians), every pass is kept, and the contenders' order rotates
    from pass to pass."""
    from fastpoint.bench import model as bench_model_mod
    from fastpoint.bench import timing

    path = _model_file(tmp_path, np.random.default_rng(3))
    # per pass: fastpoint's and the peer's seconds per call; the pass ratios 2.0, 0.5, 1.5 have the median
    # 1.5, while the medians of the times (2 and 2 ms) have the ratio 1.0
    times = iter([(1e-3, 2e-3), (4e-3, 2e-3), (2e-3, 3e-3)])
    orders = []

    def fake_alternate(contenders, rounds=7, sample_s=0.05, max_total_s=20.0, gap_s=0.0):
        orders.append(list(contenders))
        ours, peer = next(times)
        return {name: [ours if name == "fastpoint" else peer] for name in contenders}

    monkeypatch.setattr(timing, "alternate", fake_alternate)
    monkeypatch.setitem(bench_model_mod.PEER_SETUP, "fake", lambda path, threads: (lambda feeds: None))
    rows = bench_model_mod.bench_model(str(path), ["fake"], [1], shape=(1, 3, 8, 8), rounds=1, repeat=3)
    (row,) = rows
    assert [q["ratio"] for q in row["passes"]] == [2.0, 0.5, 1.5]
    assert row["ratio"] == 1.5
    assert row["ms"] == {"fastpoint": 2.0, "fake": 2.0}  # medians of the passes' medians, in ms
    assert row["ms"]["fake"] / row["ms"]["fastpoint"] != row["ratio"]
    assert [q["samples_s"]["fastpoint"] for q in row["passes"]] == [[1e-3], [4e-3], [2e-3]]
    assert orders == [["fastpoint", "fake"], ["fake", "fastpoint"], ["fastpoint", "fake"]]
    assert row["first_s"] > 0 and all(q["first_s"] > 0 for q in row["passes"])
    text = bench_model_mod.table(str(path), rows, ["fake"])
    assert "medians of 3 passes" in text and "0.50-2.00" in text and "1.50" in text.splitlines()[3]
    with pytest.raises(ValueError, match="repeat"):
        bench_model_mod.bench_model(str(path), [], [1], shape=(1, 3, 8, 8), rounds=1, repeat=0)


def test_bench_model_repeat_cli_writes_every_pass(tmp_path, capsys):
    """``fastpoint bench --model M --repeat 2 --json F``: the table says it took medians of two passes and the
    JSON keeps both passes' medians and raw samples for every contender and thread count."""
    import json

    pytest.importorskip("onnxruntime")
    path = _model_file(tmp_path, np.random.default_rng(4))
    out_json = tmp_path / "model.json"
    assert main(["bench", "--model", str(path), "--peers", "onnxruntime", "--threads", "1", "--input-shape",
                 "1,3,16,16", "--rounds", "3", "--repeat", "2", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "medians of 2 passes" in out and "x best peer" in out
    record = json.loads(out_json.read_text())
    assert record["repeat"] == 2 and record["model"] == str(path) and "--repeat" in record["command"]
    (row,) = record["rows"]
    assert len(row["passes"]) == 2 and row["rel_err"]["fastpoint"] < 1e-4
    for q in row["passes"]:
        assert set(q["ms"]) == {"fastpoint", "onnxruntime"} and len(q["samples_s"]["onnxruntime"]) >= 1
    assert main(["bench", "--model", str(path), "--peers", "none", "--threads", "1", "--repeat", "0"]) == 2
