"""The benchmark tooling: peers agree with fastpoint, `fastpoint bench` runs, its JSON re-reads, and
the pytest-benchmark suite in bench/ runs each case once (benchmarks disabled), on small layers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastpoint as fp
from fastpoint.bench import measure, peers, report
from fastpoint.bench.runner import Settings, run_bench, select_layers
from fastpoint.bench.suites import Layer
from fastpoint.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: peers that must run here (.ci/run installs them): missing, their tests fail instead of skipping
REQUIRED_PEERS = [p for p in os.environ.get("FASTPOINT_REQUIRE_PEERS", "").split(",") if p]

SMALL = [
    Layer("t_pw", "t", 1, 8, 5, 6, 7),
    Layer("t_3x3_pad", "t", 2, 4, 6, 9, 8, 3, 1, 1),
    Layer("t_3x3_s2_pad", "t", 1, 3, 4, 9, 9, 3, 2, 1),      # stride 2 that TFLite's SAME pads alike
    Layer("t_dw_dil", "t", 1, 6, 6, 10, 10, 3, 1, 2, 2, 6),
    Layer("t_grouped", "t", 1, 4, 6, 7, 7, 3, 1, 1, 1, 2),   # grouped, not depthwise
    Layer("t_5x5_s2_even", "t", 1, 3, 5, 10, 10, 5, 2, 2),   # TFLite SAME differs: pre-padded input
]


@pytest.mark.parametrize("mode", ["native", "NCHW+conv", "NHWC+conv"])
@pytest.mark.parametrize("peer", [p for p in peers.PEERS if p != "numpy-gemm"])
@pytest.mark.parametrize("layer", SMALL, ids=[la.name for la in SMALL])
def test_peer_matches_reference(peer, layer, mode):
    if peers.why_unavailable(peer):
        (pytest.fail if peer in REQUIRED_PEERS else pytest.skip)(peers.why_unavailable(peer))
    layout, conversions = ("NCHW", False) if mode == "native" else (mode[:4], True)
    prep = peers.prepare(peer, layer, 1, layout, conversions)
    if isinstance(prep, str):
        assert prep.startswith("n/a")
        return
    if conversions:
        assert prep.layout == layout
    try:
        prep.run()
        prep.run()  # a second call: buffers reused between calls must not leak state
        got = prep.result()
    finally:
        prep.close()
    x, w, b = layer.arrays()
    ref = fp.conv2d(x, w, b, **layer.kwargs(), backend="numpy")
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_numpy_gemm_shape():
    prep = peers.prepare("numpy-gemm", SMALL[1], 1)
    prep.run()
    prep.close()
    assert prep.note == "np.matmul M=6 K=36 N=72 x2"
    assert peers.prepare("numpy-gemm", SMALL[3], 1).startswith("n/a")


def test_conv_suffix_peer():
    if peers.why_unavailable("xnnpack"):
        pytest.skip(peers.why_unavailable("xnnpack"))
    assert peers.why_unavailable("xnnpack+conv") is None
    prep = peers.prepare("xnnpack+conv", SMALL[0], 1, "NCHW")
    assert prep.layout == "NCHW" and "conversions timed" in prep.note
    assert report.short("xnnpack+conv") == "xnn+conv"


def test_unknown_peer():
    assert "unknown peer" in peers.prepare("nope", SMALL[0], 1)


def test_measure():
    if fp.backends()[0] == "c":
        assert measure.fma_peak(1, 0.03) > 0.5
    gbs, how = measure.triad(1, 3 << 20)
    assert gbs > 0 and how


def test_select_layers():
    assert [la.name for la in select_layers("quick", "r50_3x3*")] == ["r50_3x3_128_28"]
    assert len(select_layers("all", "mb2_dw,unet_head")) == 9  # b8_mb2_dw_144_56 too
    with pytest.raises(ValueError, match="unknown suite"):
        select_layers("nope")


def _tiny_record():
    return run_bench(SMALL[:2], fp.backends()[:2], ["numpy-gemm"], [1], settings=Settings(2, 0.001, 0.5),
                     progress=False)


def test_run_bench_record_and_report(tmp_path):
    record = _tiny_record()
    assert [r["layer"] for r in record["results"]] == ["t_pw", "t_3x3_pad"]
    for r in record["results"]:
        assert set(r["samples"]) == set(fp.backends()[:2]) | {"numpy-gemm"}
        assert all(len(s) >= 2 for s in r["samples"].values())
        assert all(err is not None and err < 1e-5 for n, err in r["check"].items())
    path = tmp_path / "r.json"
    report.save(record, str(path))
    again = report.load([str(path), str(path)])
    text = report.report(again)
    assert "t_3x3_pad" in text and "geomean" in text and "vs gemm" in text
    assert report.report(again, markdown=True).count("| geomean |") == 1


def test_report_of_one_shot_contenders():
    """A backend beside its one-shot form: the one-shot/prepacked ratio and the peers against the one-shot
    call, per layer, per group and in the README table (every thread count side by side)."""
    main = fp.backends()[0]
    record = run_bench(SMALL[:2], [main, main + "-call"], ["numpy-gemm"], [1, 2],
                       settings=Settings(2, 0.001, 0.5), progress=False)
    text = report.report(record, markdown=True)
    ratio = f"{main}-call/{main}"
    assert f"| {ratio} | {main}-call vs gemm |" in text
    assert "README table" in text and f"{ratio} 1T" in text and f"{ratio} 2T" in text
    rows = report.table_rows(record, 1)
    col = rows[0].index(ratio)
    r = record["results"][0]
    assert rows[1][col] == f"{r['median_s'][main + '-call'] / r['median_s'][main]:.2f}x"


def test_one_shot_contenders_time_the_call_users_write(monkeypatch):
    """``c-call`` times ``fp.conv2d(x, w, b, ..., out=out)``, ``c-call-new`` ``y = fp.conv2d(x, w, b, ...)``
    (a new array per call, as torch's F.conv2d): each calls the public function with exactly these
    arguments, and both results are checked against the reference like every contender."""
    from fastpoint.bench import runner

    main = fp.backends()[0]
    seen = []
    real = fp.conv2d

    def spy(*args, **kw):
        seen.append(("out" in kw, kw.get("backend")))
        return real(*args, **kw)

    monkeypatch.setattr(fp, "conv2d", spy)
    lay = SMALL[1]
    new, out = runner.prepare_backend(main + "-call-new", lay, 1, "NCHW"), runner.prepare_backend(
        main + "-call", lay, 1, "NCHW")
    first = new.result()
    new.run()
    a = new.result()
    new.run()
    assert new.result() is not a and first is not a  # a new array each call
    out.run()
    np.testing.assert_array_equal(a, out.result())
    assert seen == [(False, main), (False, main), (True, main)]
    record = run_bench(SMALL[:1], [main, main + "-call", main + "-call-new"], [], [1],
                       settings=Settings(2, 0.001, 0.5), progress=False)
    r = record["results"][0]
    assert set(r["samples"]) == {main, main + "-call", main + "-call-new"}


def test_cli_bench_json_compare_plot(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["--threads", "1", "bench", "--layers", "mb2_dw_960_7", "--suite", "mobilenetv2",
                 "--backends", fp.backends()[0], "--peers", "none", "--rounds", "2", "--sample-ms", "1",
                 "-q", "--json", str(out)]) == 0
    first = capsys.readouterr().out
    assert "mb2_dw_960_7" in first and "%bw" in first
    data = json.loads(out.read_text())
    assert data["machine"]["cpu"] and data["results"][0]["samples"]
    png = tmp_path / "r.png"
    args = ["bench", "--compare", str(out)]
    try:
        import matplotlib  # noqa: F401

        args += ["--plot", str(png)]
    except ImportError:
        png = None
    assert main(args) == 0
    assert "mb2_dw_960_7" in capsys.readouterr().out
    if png is not None:
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_bench_list(capsys):
    assert main(["bench", "--list"]) == 0
    text = capsys.readouterr().out
    assert "quick" in text and "numpy-gemm" in text and "numpy" in text


def test_cli_info_measures(capsys):
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "GB/s" in text and "peak:" in text


def test_pytest_bench_suite_runs_once():
    """bench/ itself, every contender once on two small layers, with benchmarks disabled."""
    env = dict(os.environ, FASTPOINT_BENCH_THREADS="1")
    cmd = [sys.executable, "-m", "pytest", "bench/", "-q", "-p", "no:cacheprovider", "--benchmark-disable",
           "-k", "mb2_dw_960_7 or r50_1x1_2048_512_7"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout


@pytest.mark.parametrize("layout,conversions", [("NHWC", False), ("NCHW", True), ("NHWC", True)])
def test_run_bench_layouts_check_every_contender(layout, conversions):
    names = [p for p in ("xnnpack", "onnxruntime", "torch", "numpy-gemm") if not peers.why_unavailable(p)]
    record = run_bench(SMALL[2:4], fp.backends()[:1], names, [1], layout=layout, conversions=conversions,
                       settings=Settings(2, 0.001, 0.5), progress=False)
    assert record["conversions"] is conversions
    for r in record["results"]:
        assert set(r["check"]) == {n for n in names if n != "numpy-gemm"}
        assert all(err is not None and err < 1e-5 for err in r["check"].values()), r["check"]
        assert "numpy-gemm" in r["na"] or "numpy-gemm" not in names or r["layer"] != "t_dw_dil"


def test_bench_restarts_the_installed_package_not_a_fastpoint_folder_in_the_current_directory(tmp_path):
    # `fastpoint bench` restarts itself when OpenBLAS tuning variables are set; run in a clone, the
    # restart once imported the clone's source tree (no C extension built there) in place of the install
    script = os.path.join(os.path.dirname(sys.executable), "fastpoint")
    if not os.path.isfile(script):
        pytest.skip("the fastpoint script is not installed beside this Python")
    decoy = tmp_path / "fastpoint"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise SystemExit('imported the fastpoint folder of the current directory')\n")
    env = {k: v for k, v in os.environ.items() if k != "FASTPOINT_BENCH_REEXEC"}
    env["OPENBLAS_CORETYPE"] = "Haswell"
    res = subprocess.run([script, "bench", "--list"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert "restarting without OPENBLAS_CORETYPE" in res.stderr
    assert res.returncode == 0, res.stderr
    assert "quick" in res.stdout


@pytest.mark.parametrize("suite", ["conv1d", "transposed"])
def test_op_suites_time_the_layer_and_the_one_shot_call(suite):
    """conv1d / transposed suites name their contenders as conv2d's do: ``c`` the prepacked layer, ``c-call``
    the one-shot function; both are checked against each other before timing."""
    from fastpoint.bench.suites import SUITES

    main = fp.backends()[0]
    record = run_bench(SUITES[suite][:1], [main, main + "-call"], [], [1], settings=Settings(1, 0.001, 0.1),
                       progress=False)
    r = record["results"][0]
    assert set(r["median_s"]) == {main, main + "-call"} and not r["na"]
    assert r["check"][main + "-call"] == 0.0  # the one-shot call equals the layer bit for bit
