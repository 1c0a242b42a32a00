"""Tables and charts from a benchmark record (live, or re-read from ``--json`` files).

Everything here reads only the record, so ``fastpoint bench --compare r.json`` prints the same table
as the run that wrote ``r.json``, on any machine.
"""

from __future__ import annotations

import json
import math
from typing import Dict, List, Optional, Sequence

SHORT = {"torch": "torch", "torch-cl": "t-cl", "onnxruntime": "ort", "xnnpack": "xnn", "numpy-gemm": "gemm"}


def short(name: str) -> str:
    base, plus, rest = name.partition("+")
    return SHORT.get(base, base) + plus + rest


def load(paths: Sequence[str]) -> Dict[str, object]:
    """Read one or more JSON records; several are merged (later files win for the same layer+threads)."""
    records = []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        if data.get("format") != "fastpoint-bench/1":
            raise ValueError(f"{path} is not a fastpoint bench record (format {data.get('format')!r})")
        records.append(data)
    merged = dict(records[0])
    seen_c = {c["name"]: c for c in records[0]["contenders"]}
    results = {(r["layer"], r["threads"]): r for r in records[0]["results"]}
    for data in records[1:]:
        for c in data["contenders"]:
            seen_c.setdefault(c["name"], c)
        for r in data["results"]:
            results[(r["layer"], r["threads"])] = r
        machine = merged["machine"] = dict(merged["machine"])
        for key in ("fma_peak_gflops", "triad_gbs"):  # the best measurement: load only lowers them
            machine[key] = dict(machine.get(key, {}))
            for t, v in data["machine"].get(key, {}).items():
                if v and (machine[key].get(t) is None or v > machine[key][t]):
                    machine[key][t] = v
        for key in ("loadavg_before", "loadavg_after"):  # the worst: how busy the machine was
            values = [x for x in (machine.get(key), data["machine"].get(key)) if x is not None]
            machine[key] = max(values) if values else None
        merged["threads"] = sorted(set(merged["threads"]) | set(data["threads"]))
        if data.get("command") and data["command"] not in merged.get("command", ""):
            merged["command"] = f"{merged.get('command', '')}; {data['command']}".strip("; ")
    backends = [c for c in seen_c.values() if c["kind"] == "backend"]
    merged["contenders"] = backends + [c for c in seen_c.values() if c["kind"] == "peer"]
    merged["results"] = list(results.values())
    return merged


def save(record: Dict[str, object], path: str) -> None:
    with open(path, "w") as f:
        json.dump(record, f, indent=1)


def _gmean(values: List[float]) -> Optional[float]:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _num(v: Optional[float], digits: int = 3) -> str:
    if v is None:
        return ""
    if v >= 1000:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def _limit(record, key: str, threads: int) -> Optional[float]:
    value = record["machine"].get(key, {}).get(str(threads))
    return value if value and value > 0 else None


#: the suffix of a backend's one-shot contender (``c-call``: ``fp.conv2d(..., out=out)`` on every call;
#: runner.py), and of its form that returns a new array (``c-call-new``: ``y = fp.conv2d(...)``, what a
#: NumPy user writes in a loop, as torch's ``F.conv2d`` allocates its result)
CALL = "-call"
CALL_NEW = "-call-new"


def backend_of(contender: str) -> str:
    """The backend a fastpoint contender runs: ``c`` for ``c``, ``c-call`` and ``c-call-new``."""
    return contender.removesuffix(CALL_NEW).removesuffix(CALL)


def _ratio_columns(record: Dict[str, object]) -> List[tuple]:
    """(header, numerator, denominator) of the ratio columns: each peer's time over the main backend's
    (``vs P``); where a backend's one-shot form ran too, the one-shot time over the prepacked one's
    (``c-call/c``, <= 1.05 is the one-shot target) and each peer's time over the main one-shot's."""
    names = [c["name"] for c in record["contenders"]]
    backends = [c["name"] for c in record["contenders"] if c["kind"] == "backend"]
    peer_names = [c["name"] for c in record["contenders"] if c["kind"] == "peer"]
    main = backends[0] if backends else names[0]
    cols = [(f"vs {short(p)}", p, main) for p in peer_names]
    cols += [(f"{short(b + CALL)}/{short(b)}", b + CALL, b) for b in backends if b + CALL in names]
    call = main + CALL
    if call in names:
        cols += [(f"{short(call)} vs {short(p)}", p, call) for p in peer_names]
    return cols


def _ratio(results: List[dict], num: str, den: str) -> Optional[float]:
    return _gmean([r["median_s"][num] / r["median_s"][den] for r in results
                   if num in r.get("median_s", {}) and den in r.get("median_s", {})])


def table_rows(record: Dict[str, object], threads: int) -> List[List[str]]:
    """Header + one row per layer + a geomean row, for one thread count."""
    names = [c["name"] for c in record["contenders"]]
    backends = [c["name"] for c in record["contenders"] if c["kind"] == "backend"]
    main = backends[0] if backends else names[0]
    others = [n for n in names if n != main]
    peak = _limit(record, "fma_peak_gflops", threads)
    bw = _limit(record, "triad_gbs", threads)
    header = ["layer", "MFLOP", f"{main} ms", f"{main} GFLOP/s", "%peak", "GB/s", "%bw"]
    ratios = _ratio_columns(record)
    header += [f"{short(n)} GF/s" for n in others] + [h for h, _, _ in ratios]
    rows = [header]
    gflops: Dict[str, List[float]] = {n: [] for n in names}
    results = [r for r in record["results"] if r["threads"] == threads]
    for r in results:
        med = r.get("median_s", {})
        gf = {n: r["flops"] / med[n] * 1e-9 for n in med}
        for n, v in gf.items():
            gflops[n].append(v)
        t = med.get(main)
        row = [r["layer"] + _flag(r, main), _num(r["flops"] * 1e-6, 4), _num(t * 1e3 if t else None),
               _num(gf.get(main)) + _noisy(r, main)]
        if t and r["memory_bound"]:
            gbs = r["bytes"] / t * 1e-9
            row += ["", _num(gbs), f"{100 * gbs / bw:.0f}%" if bw else ""]
        else:
            row += [f"{100 * gf[main] / peak:.0f}%" if (t and peak) else "", "", ""]
        for n in others:
            row.append(_num(gf.get(n)) + _noisy(r, n) + _flag(r, n) if n in gf
                       else ("n/a" if n in r.get("na", {}) else ""))
        row += [f"{g:.2f}x" if (g := _ratio([r], num, den)) else "" for _, num, den in ratios]
        rows.append(row)
    geo = ["geomean", "", "", _num(_gmean(gflops.get(main, []))), "", "", ""]
    geo += [_num(_gmean(gflops[n])) for n in others]
    geo += [f"{g:.2f}x" if (g := _ratio(results, num, den)) else "" for _, num, den in ratios]
    rows.append(geo)
    return rows


def group_rows(record: Dict[str, object], threads: int) -> List[List[str]]:
    """Geomean GFLOP/s per layer group (resnet_1x1, mbv2_dw, ...) and contender, and the geomean ratios."""
    return readme_rows(record, [threads])


def readme_rows(record: Dict[str, object], threads: Sequence[int]) -> List[List[str]]:
    """Per layer group: each contender's geomean GFLOP/s and the geomean ratio columns (``_ratio_columns``:
    peers against the prepacked layer and against the one-shot call, one-shot / prepacked), for each of
    ``threads`` side by side: the README's table (``--markdown`` prints it for every thread count)."""
    names = [c["name"] for c in record["contenders"]]
    ratios = _ratio_columns(record)
    tag = (lambda t: f" {t}T") if len(threads) > 1 else (lambda t: "")
    groups: Dict[str, Dict[int, List[dict]]] = {}
    for r in record["results"]:
        if r["threads"] in threads:
            groups.setdefault(r.get("group", "?"), {}).setdefault(r["threads"], []).append(r)
    header = ["group", "layers"]
    for t in threads:
        header += [f"{short(n)} GF/s{tag(t)}" for n in names] + [h + tag(t) for h, _, _ in ratios]
    rows = [header]
    for group, per_threads in groups.items():
        row = [group, str(max(len(v) for v in per_threads.values()))]
        for t in threads:
            results = per_threads.get(t, [])
            row += [_num(_gmean([r["flops"] / r["median_s"][n] * 1e-9 for r in results
                                 if n in r.get("median_s", {})])) for n in names]
            row += [f"{g:.2f}x" if (g := _ratio(results, num, den)) else "" for _, num, den in ratios]
        rows.append(row)
    return rows


def _noisy(r, name: str) -> str:
    """'~' when the medians of the first and second half of the rounds differ by more than 25%."""
    samples = r.get("samples", {}).get(name, [])
    if len(samples) < 4:
        return ""
    half = len(samples) // 2
    a, b = sorted(samples[:half])[(half - 1) // 2], sorted(samples[half:])[(len(samples) - half - 1) // 2]
    return "~" if max(a, b) > 1.25 * min(a, b) else ""


def _flag(r, name: str) -> str:
    err = r.get("check", {}).get(name)
    return " (!)" if err is not None and err > 1e-3 else ""


def format_table(rows: List[List[str]], markdown: bool = False, geomean_row: bool = True) -> str:
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    fmt = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                for i, (c, w) in enumerate(zip(row, widths)))
    lines = [fmt(rows[0]), "  ".join("-" * w for w in widths)] + [fmt(row) for row in rows[1:]]
    if geomean_row:
        lines.insert(len(lines) - 1, lines[1])
    return "\n".join(lines)


def describe(record: Dict[str, object]) -> str:
    m = record["machine"]
    peaks = ", ".join(f"{t}T {_num(v)}" for t, v in m.get("fma_peak_gflops", {}).items() if v)
    bws = ", ".join(f"{t}T {_num(v)}" for t, v in m.get("triad_gbs", {}).items() if v)
    conv = "peers convert layouts, timed" if record.get("conversions") else "peers in native layouts, untimed"
    text = (f"fastpoint {record['fastpoint']} bench, {record['date']}; CPU {m['cpu']} ({m['cpus']} CPUs, "
            f"ISA {m['isa'] or 'n/a'}); layout {record['layout']} for the fastpoint backends ({conv})\n"
            f"measured FMA peak GFLOP/s: {peaks or 'n/a (no C extension)'}; triad GB/s: {bws or 'n/a'}")
    load = m.get("loadavg_before")
    if load is not None:
        text += f"; load average before/after: {load}/{m.get('loadavg_after')}"
        if load > 0.5:
            text += "\nwarning: other processes were using the CPUs: figures are lower and noisier than when idle"
    return text


def notes(record: Dict[str, object]) -> List[str]:
    peer_names = [c["name"] for c in record["contenders"] if c["kind"] == "peer"]
    main = record["contenders"][0]["name"] if record["contenders"] else "?"
    out = ["median of alternating rounds; GFLOP/s = 2*MACs/median time; '%peak' = of the measured FMA peak at "
           "that thread count; memory-bound layers (depthwise, < 20 flop/byte) give GB/s of the minimum traffic "
           "(input + output + weights once) and '%bw' of the measured triad bandwidth (small layers run from "
           "cache, so %bw can pass 100%)",
           f"'vs P' = time of peer P / time of {main} (> 1: {main} is faster); geomean over the layers both ran; "
           f"'B{CALL}/B' = time of backend B's one-shot call (fp.conv2d, weights packed on every call) / time of "
           f"its prepacked layer (fp.Conv2d); '{main}{CALL} vs P' = time of P / time of the one-shot call",
           "~ = the medians of the first and second half of the rounds differ by more than 25% (a noisy cell); "
           "the GFLOP/s geomeans are over the layers each contender ran (gemm skips depthwise layers): "
           "compare contenders with the 'vs' columns",
           (f"peers whose native layout is not {record['layout']} convert {record['layout']} input and output, and "
            "the conversions are timed (--conversions)" if record.get("conversions") else
            "peers run in their native layout with input and weights already in it (conversions not timed): "
            "torch/ort NCHW, t-cl/xnn NHWC, gemm in the bench layout")]
    if "numpy-gemm" in peer_names:
        out.append("gemm = bare np.matmul of the layer's GEMM shape (M=Cout, K=Cin*k*k, N=OH*OW): "
                   "not a convolution, the ceiling of an im2col + BLAS one; n/a = does not apply")
    flagged = sorted({f"{r['layer']}: {n}" for r in record["results"] for n, e in r.get("check", {}).items()
                      if e is not None and e > 1e-3})
    if flagged:
        out.append("(!) output differs from the first backend's: " + "; ".join(flagged))
    return ["note: " + n for n in out]


def report(record: Dict[str, object], markdown: bool = False) -> str:
    parts = [describe(record)]
    for threads in record["threads"]:
        peak = _limit(record, "fma_peak_gflops", threads)
        title = f"{threads} thread{'s' if threads > 1 else ''}" + (f" (FMA peak {_num(peak)} GFLOP/s)" if peak else "")
        parts += ["", f"### {title}" if markdown else f"== {title}", "",
                  format_table(table_rows(record, threads), markdown)]
        groups = group_rows(record, threads)
        if len(groups) > 2:
            parts += ["", f"#### {title}: geomean per layer group" if markdown else "per layer group (geomeans):",
                      "", format_table(groups, markdown, geomean_row=False)]
    if markdown and len(record["threads"]) > 1:
        parts += ["", "### README table: geomean per layer group, every thread count", "",
                  format_table(readme_rows(record, record["threads"]), markdown, geomean_row=False)]
    parts += [""] + notes(record)
    return "\n".join(parts)


def plot(record: Dict[str, object], path: str) -> None:
    """Horizontal bars of GFLOP/s per layer and contender, one panel per thread count, FMA peak line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401 - for the axis formatter

    names = [c["name"] for c in record["contenders"]]
    thread_counts = record["threads"]
    layers: List[str] = []
    for r in record["results"]:
        if r["layer"] not in layers:
            layers.append(r["layer"])
    height = max(4.0, 0.075 * len(layers) * (len(names) + 1.5) + 1.6)
    fig, axes = plt.subplots(1, len(thread_counts), figsize=(5.2 * len(thread_counts) + 1.6, height), sharey=True,
                             squeeze=False)
    colors = plt.get_cmap("tab10").colors
    bar_h = 0.84 / len(names)
    for ax, threads in zip(axes[0], thread_counts):
        by_layer = {r["layer"]: r for r in record["results"] if r["threads"] == threads}
        for i in range(0, len(layers), 2):  # zebra rows: which bars belong to which layer
            ax.axhspan(i - 0.5, i + 0.5, color="0.93", zorder=0)
        for j, name in enumerate(names):
            ys, xs = [], []
            for i, layer in enumerate(layers):
                r = by_layer.get(layer)
                if r and name in r.get("median_s", {}):
                    ys.append(i - 0.42 + (j + 0.5) * bar_h)
                    xs.append(r["flops"] / r["median_s"][name] * 1e-9)
            ax.barh(ys, xs, height=bar_h, color=colors[j % len(colors)], label=short(name), zorder=2)
        peak = _limit(record, "fma_peak_gflops", threads)
        if peak:
            ax.axvline(peak, color="black", linestyle="--", linewidth=1.2, zorder=3)
            ax.annotate(f"FMA peak {peak:.0f}", (peak, -0.5), xytext=(-3, 3), textcoords="offset points",
                        fontsize=8, ha="right", va="bottom")
        ax.set_xscale("log")
        ax.set_title(f"{threads} thread{'s' if threads > 1 else ''}", fontsize=10)
        ax.set_xlabel("GFLOP/s (log scale; higher is better)", fontsize=9)
        ax.grid(axis="x", which="major", alpha=0.5, zorder=1)
        ax.grid(axis="x", which="minor", alpha=0.15, zorder=1)
        ax.set_ylim(len(layers) - 0.5, -1.3)
        ax.tick_params(axis="x", labelsize=8)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axes[0][0].set_yticks(range(len(layers)))
    axes[0][0].set_yticklabels(layers, fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(names), fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.35 / height))
    fig.suptitle(f"fastpoint bench: {record['machine']['cpu']}, {record['layout']}, {record['date']}",
                 fontsize=10, y=1 - 0.08 / height)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.7 / height))
    fig.savefig(path, dpi=72)
    plt.close(fig)
