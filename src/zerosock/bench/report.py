"""Output of a benchmark run: the terminal table, the JSON document and the plot."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, TextIO

from .contenders import BASELINES, CONTENDERS, baseline_for
from .machine import busy_before, summary_lines
from .runner import Cell, format_size
from .scale import WARMUP_CONNECTIONS

SCHEMA = 1


def _num(value: Optional[float], digits: int = 1, width: int = 9) -> str:
    if value is None:
        return "-".rjust(width)
    return f"{value:,.{digits}f}".rjust(width)


def _ratio(value: Optional[float]) -> str:
    if value is None:
        return "-".rjust(8)
    text = f"{value:.3f}" if value < 0.1 else f"{value:.1f}" if value >= 100 else f"{value:.2f}"
    return text.rjust(8)


def _pct(value: Optional[float], width: int = 7) -> str:
    return "-".rjust(width) if value is None else f"{value:.0%}".rjust(width)


def rate_unit(cell: Cell) -> str:
    return {"echo": "req/s", "stream": "MiB/s", "udp": "dgram/s", "http": "req/s",
            "tls": "req/s", "conns": "KiB/conn", "churn": "conn/s"}[cell.workload]


def format_memory_cell(cell: Cell, rows: List[Dict[str, Any]], repeats: int) -> str:
    """A ``conns`` cell: the server's resident memory per open connection."""
    name_width = max([len("contender")] + [len(r["contender"]) for r in rows])
    head = (f"{'contender':<{name_width}} {'KiB/conn':>9} {'±':>6} {'RSS before':>10} "
            f"{'RSS after':>10} {'open s':>7} {'×asyncio':>8} {'×uvloop':>8}  note")
    runs = "1 run" if repeats == 1 else f"median of {repeats} runs, ± half their range"
    lines = [f"{cell.label}  ({runs}; × = memory ratio, lower is better)", head,
             "-" * len(head)]
    for row in rows:
        name = f"{row['contender']:<{name_width}}"
        if row["status"] != "ok":
            lines.append(f"{name} {row['status'].upper():>9}  {row.get('note') or ''}")
            continue
        mib = [None if row.get(k) is None else row[k] / (1 << 20)
               for k in ("rss_before", "rss_after")]
        spread = _pct(row.get("spread"), 6) if repeats > 1 else "-".rjust(6)
        lines.append(
            f"{name} {_num(row['rate'] / 1024, 2, 9)} {spread}"
            f" {_num(mib[0], 1, 7)} MiB {_num(mib[1], 1, 7)} MiB {_num(row.get('open_seconds'), 2, 7)}"
            f" {_ratio(row.get('vs_asyncio'))} {_ratio(row.get('vs_uvloop'))}"
            f"  {row.get('note') or ''}".rstrip())
    return "\n".join(lines)


def format_cell(cell: Cell, rows: List[Dict[str, Any]], repeats: int) -> str:
    if cell.workload == "conns":
        return format_memory_cell(cell, rows, repeats)
    unit = rate_unit(cell)
    name_width = max([len("contender")] + [len(r["contender"]) for r in rows])
    head = (f"{'contender':<{name_width}} {unit:>11} {'±':>6} {'p50 µs':>9} {'p99 µs':>9} "
            f"{'CPU µs/' + cell.unit:>13} {'srv CPU':>7} {'gen CPU':>7} "
            f"{'×asyncio':>8} {'×uvloop':>8}  note")
    runs = "1 run" if repeats == 1 else f"median of {repeats} runs, ± half their range"
    lines = [f"{cell.label}  ({runs}; × = throughput ratio)", head, "-" * len(head)]
    for row in rows:
        name = f"{row['contender']:<{name_width}}"
        if row["status"] != "ok":
            label = {"skipped": "skipped", "failed": "FAILED", "not run": "not run"}.get(
                row["status"], row["status"].upper())
            lines.append(f"{name} {label:>11}  {row.get('note') or ''}")
            continue
        digits = 0 if cell.workload != "stream" else 1
        lines.append(
            f"{name} {_num(row['rate'], digits, 11)} {_pct(row.get('spread'), 6) if repeats > 1 else '-'.rjust(6)}"
            f" {_num(row.get('p50_us'))} {_num(row.get('p99_us'))}"
            f" {_num(row.get('cpu_per_op_us'), 2, 13)} {_pct(row.get('server_cpu_util'))}"
            f" {_pct(row.get('gen_cpu_util'))}"
            f" {_ratio(row.get('vs_asyncio'))} {_ratio(row.get('vs_uvloop'))}"
            f"  {row.get('note') or ''}".rstrip())
    return "\n".join(lines)


def format_instructions(cell: Cell, rows: List[Dict[str, Any]]) -> str:
    counts = rows[0]["requests"] if rows else [0, 0]
    lines = [f"{cell.label}: user-space instructions and syscalls per {cell.unit} "
             f"(difference of runs of {counts[0]:,} and {counts[1]:,})"]
    name_width = max([len("contender")] + [len(r["contender"]) for r in rows])
    tls = any(r.get("outside_openssl_per_op") is not None for r in rows)
    head = (f"{'contender':<{name_width}} {'instr/' + cell.unit:>12} {'×asyncio':>8} {'×uvloop':>8}"
            + (f" {'not OpenSSL':>11} {'×uvloop':>8}" if tls else "")
            + f" {'syscalls/' + cell.unit:>14}  syscalls")
    lines += [head, "-" * len(head)]
    by_name = {r["contender"]: r for r in rows}
    for row in rows:
        instr = row.get("instructions_per_op")
        ratios = []
        for base in ("asyncio", "uvloop"):
            ref = by_name.get(baseline_for(row["contender"], base, by_name),
                              {}).get("instructions_per_op")
            ratios.append(instr / ref if instr is not None and ref else None)
        outside = ""
        if tls:  # what the loop and the interpreter spend, libssl and libcrypto left out
            mine = row.get("outside_openssl_per_op")
            ref = by_name.get("uvloop-proto", {}).get("outside_openssl_per_op")
            outside = (f" {_num(mine, 0, 11)}"
                       f" {_ratio(mine / ref if mine is not None and ref else None)}")
        syscalls = row.get("syscalls_per_op")
        top = ", ".join(f"{k} {v:.2f}" for k, v in list(row.get("syscalls_by_name", {}).items())[:4])
        errors = "; ".join(row[k] for k in ("instructions_error", "syscalls_error", "error")
                           if row.get(k))
        lines.append(
            f"{row['contender']:<{name_width}} {_num(instr, 0, 12)} {_ratio(ratios[0])}"
            f" {_ratio(ratios[1])}{outside} {_num(syscalls, 2, 14)}  {top}{'  ' + errors if errors else ''}"
            .rstrip())
    return "\n".join(lines)


def format_report(doc: Dict[str, Any]) -> str:
    out = ["zerosock.bench"]
    out += ["  " + line for line in summary_lines(doc["machine"])]
    repeats = doc["settings"]["repeats"]
    for cell_doc in doc["cells"]:
        cell = Cell.from_doc(cell_doc)
        out += ["", format_cell(cell, cell_doc["rows"], repeats)]
    for item in doc.get("instructions", []):
        cell = Cell.from_doc(item)
        out += ["", format_instructions(cell, item["rows"])]
    notes = []
    if any(r.get("gen_saturated") for c in doc["cells"] for r in c["rows"]):
        notes.append("generator busy: the load generator's own CPU was over 90% busy, so that "
                     "figure may be capped by it; compare CPU µs per request instead.")
    if any(r.get("starved") for c in doc["cells"] for r in c["rows"]):
        notes.append("starved: with this many requests in flight the server or the generator "
                     "should be near 100% busy; neither was, so other work took the CPUs and "
                     "that row's throughput and latency understate it.")
    if doc["cells"] and busy_before(doc["machine"]):
        notes.append(f"The machine was busy before the run (load average "
                     f"{doc['machine']['load_average_before']}): throughput and latency are "
                     "noisy, and pinned processes cannot move away from the other work. "
                     "A quiet machine, or --no-pin, gives steadier figures; CPU per request "
                     "and --instructions are the least affected.")
    if doc["machine"].get("load_generator") == "python":
        notes.append("The Python load generator is in use (no C extension, or ZEROSOCK_PURE_PYTHON "
                     "set): throughput and "
                     "latency measure the generator more than the servers.")
    if any(c["workload"] == "conns" for c in doc["cells"]):
        notes.append("KiB/conn: the growth of the server's resident memory (VmRSS) from "
                     "before the connections were opened to when every one had echoed once, "
                     "divided by their number, with no forced collection; measured after "
                     f"{WARMUP_CONNECTIONS} warm-up connections came and went.")
    if any(c["workload"] == "churn" for c in doc["cells"]):
        notes.append("conn/s: connections each opened, echoed once and closed by the client, "
                     "per second; CPU µs/conn and instr/conn are the server's per connection.")
    if doc["cells"]:
        notes.append("CPU µs/req: the server process's user+system time over the measured "
                     "window divided by the requests it served (lower is better); srv/gen CPU: "
                     "how busy the server and the load generator were.")
    if doc["cells"] or doc.get("instructions"):
        notes.append("×asyncio, ×uvloop: against that library's server of the same style "
                     "(Protocol, BufferedProtocol, streams; http: the same framework) when it "
                     "ran, else its Protocol server.")
    if doc.get("instructions"):
        notes.append("instr/req: user-space instructions of the server process (callgrind); "
                     "syscalls/req: its system calls (strace -f); both the difference of two "
                     "runs of different lengths, so start-up cancels and the figures repeat.")
    idle = doc["settings"].get("idle")
    if idle:
        notes.append(f"Every echo, stream and http server also held {idle:,} idle connections "
                     "open (each echoed once) while it was measured.")
    if doc.get("interrupted"):
        notes.append("Interrupted: the tables show what was measured before Ctrl-C.")
    out += [""] + ["* " + n for n in notes]
    return "\n".join(out)


def _md(value: Optional[float], digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def format_markdown(doc: Dict[str, Any]) -> str:
    """The tables as GitHub Markdown, with the machine and date, for a README."""
    repeats = doc["settings"]["repeats"]
    runs = "1 run" if repeats == 1 else f"median of {repeats} runs"
    out = ["Measured with `python -m zerosock.bench`: "
           + " · ".join(summary_lines(doc["machine"])) + f" ({runs} per row)."]
    for cell_doc in doc["cells"]:
        cell = Cell.from_doc(cell_doc)
        unit = rate_unit(cell)
        if cell.workload == "conns":
            out += _markdown_memory(cell, cell_doc["rows"])
            continue
        out += ["", f"**{cell.label}**", "",
                f"| contender | {unit} | p50 µs | p99 µs | server CPU µs/{cell.unit} "
                "| × asyncio | × uvloop | note |",
                "|---|--:|--:|--:|--:|--:|--:|---|"]
        for row in cell_doc["rows"]:
            if row["status"] != "ok":
                out.append(f"| {row['contender']} | {row['status']} | | | | | "
                           f"| {row.get('note') or ''} |")
                continue
            digits = 1 if cell.workload == "stream" else 0
            ratios = [("–" if row.get(k) is None else f"{row[k]:.2f}")
                      for k in ("vs_asyncio", "vs_uvloop")]
            out.append(f"| {row['contender']} | {_md(row['rate'], digits)} "
                       f"| {_md(row.get('p50_us'))} | {_md(row.get('p99_us'))} "
                       f"| {_md(row.get('cpu_per_op_us'), 2)} | {ratios[0]} | {ratios[1]} "
                       f"| {row.get('note') or ''} |")
    for item in doc.get("instructions", []):
        cell = Cell.from_doc(item)
        out += ["", f"**{cell.label}: user-space instructions and syscalls per {cell.unit}**", "",
                f"| contender | instructions/{cell.unit} | syscalls/{cell.unit} |",
                "|---|--:|--:|"]
        for row in item["rows"]:
            out.append(f"| {row['contender']} | {_md(row.get('instructions_per_op'), 0)} "
                       f"| {_md(row.get('syscalls_per_op'), 2)} |")
    return "\n".join(out) + "\n"


def _markdown_memory(cell: Cell, rows: List[Dict[str, Any]]) -> List[str]:
    out = ["", f"**{cell.label}**", "",
           "| contender | KiB/conn | × asyncio | × uvloop | note |", "|---|--:|--:|--:|---|"]
    for row in rows:
        if row["status"] != "ok":
            out.append(f"| {row['contender']} | {row['status']} | | | {row.get('note') or ''} |")
            continue
        ratios = [("–" if row.get(k) is None else f"{row[k]:.2f}")
                  for k in ("vs_asyncio", "vs_uvloop")]
        out.append(f"| {row['contender']} | {_md(row['rate'] / 1024, 2)} | {ratios[0]} "
                   f"| {ratios[1]} | {row.get('note') or ''} |")
    return out


def write_report(doc: Dict[str, Any], stream: TextIO) -> None:
    stream.write(format_report(doc) + "\n")
    stream.flush()


def dump_json(doc: Dict[str, Any], stream: TextIO) -> None:
    json.dump(doc, stream, indent=2, sort_keys=False)
    stream.write("\n")


def cell_doc(cell: Cell, rows: List[Dict[str, Any]],
             runs: Dict[str, List[Dict[str, Any]]]) -> Dict[str, Any]:
    return {"workload": cell.workload, "size": cell.size, "connections": cell.connections,
            "variant": cell.variant, "label": cell.label, "rate_unit": rate_unit(cell), "unit": cell.unit,
            "rows": rows, "runs": runs}


# ------------------------------------------------------------ plot

_LIBRARY_COLOURS = {
    "stdlib": ["#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c"],
    "uvloop": ["#fdae6b", "#fd8d3c", "#e6550d"],
    "zerosock": ["#a1d99b", "#74c476", "#41ab5d", "#238b45", "#006d2c"],
    "c": ["#636363"],
    "test": ["#de2d26"],
}


def _colours(names: Sequence[str]) -> Dict[str, str]:
    used: Dict[str, int] = {}
    colours = {}
    for name in names:
        library = CONTENDERS[name].library if name in CONTENDERS else "test"
        palette = _LIBRARY_COLOURS.get(library, ["#888888"])
        colours[name] = palette[used.get(library, 0) % len(palette)]
        used[library] = used.get(library, 0) + 1
    return colours


def _bars(ax: Any, rows: List[Dict[str, Any]], values: List[float], notes: List[str],
          colours: Dict[str, str], title: str, number: str) -> None:
    """One horizontal bar per contender, its value written beside it."""
    labels = [r["contender"] for r in rows]
    ax.barh(range(len(rows)), values, color=[colours[n] for n in labels])
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    # a log scale where the values span orders of magnitude (echo servers down to
    # the C floor); a linear one from zero where they are alike (frameworks)
    positive = [v for v in values if v > 0]
    log_scale = bool(positive) and min(values) > 0 and max(values) > 20 * min(positive)
    if log_scale:
        ax.set_xscale("log")
    for y, (value, note) in enumerate(zip(values, notes)):
        ax.text(max(value, 0), y, " " + number.format(value) + note, va="center", fontsize=7)
    ax.set_xlim(right=max(max(values), 1e-9) * (8 if log_scale else 1.45))
    ax.set_title(title.format(scale=", log scale" if log_scale else ""), fontsize=10)
    ax.grid(axis="x", alpha=0.3)


def plot(doc: Dict[str, Any], path: str) -> Optional[str]:
    """Write a grouped bar chart; returns a note instead when matplotlib is missing.

    Throughput and server CPU per request are drawn relative to stdlib asyncio
    (Protocol) in each cell, so cells of very different scales read alike;
    instruction counts, when measured, get a panel of their own.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install 'zerosock[bench]')"
    cells = [c for c in doc["cells"]
             if c["workload"] != "conns" and any(r.get("rate") for r in c["rows"])]
    memory = [(c, [r for r in c["rows"] if r.get("rate") is not None])
              for c in doc["cells"] if c["workload"] == "conns"]
    memory = [(c, rows) for c, rows in memory if rows]
    instr = [(item, [r for r in item["rows"] if r.get("instructions_per_op")])
             for item in doc.get("instructions", [])]
    instr = [(item, rows) for item, rows in instr if rows]
    if not cells and not instr and not memory:
        return "nothing was measured: no plot"
    names: List[str] = []
    for c in cells:
        for r in c["rows"]:
            if r.get("rate") and r["contender"] not in names:
                names.append(r["contender"])
    for _, rows in instr + memory:
        for r in rows:
            if r["contender"] not in names:
                names.append(r["contender"])
    colours = _colours(names)
    panels = (2 if cells else 0) + len(instr) + len(memory)
    width_in = max(9.0, 0.16 * len(cells) * max(1, len(names)) + 4)
    fig = plt.figure(figsize=(width_in, 3.6 * panels + 1.2))
    base_name = BASELINES["asyncio"]
    axes = []
    if cells:
        width = 0.8 / max(1, len(names))
        first = fig.add_subplot(panels, 1, 1)
        second = fig.add_subplot(panels, 1, 2, sharex=first)
        for panel, (ax, key, title) in enumerate(zip(
                (first, second), ("rate", "cpu_per_op_us"),
                ("Throughput relative to stdlib asyncio (Protocol; http: the same framework), "
                 "median and range of the runs: higher is better",
                 "Server CPU time per request relative to stdlib asyncio (Protocol; http: the "
                 "same framework): lower is better"))):
            for i, name in enumerate(names):
                xs, ys, low, high = [], [], [], []
                for j, c in enumerate(cells):
                    by_name = {r["contender"]: r for r in c["rows"]}
                    # an application is compared with itself on asyncio, not with a Protocol
                    ref_name = (baseline_for(name, "asyncio", by_name)
                                if c["workload"] == "http" else base_name)
                    row, base = by_name.get(name), by_name.get(ref_name)
                    if not row or row.get(key) is None:
                        continue
                    ref = base.get(key) if base else None
                    if not ref:  # no asyncio figure in this cell: the best one is 1.0
                        candidates = [r[key] for r in c["rows"] if r.get(key)]
                        ref = max(candidates) if key == "rate" else min(candidates)
                    xs.append(j + (i - (len(names) - 1) / 2) * width)
                    ys.append(row[key] / ref)
                    rates = row.get("rates") if key == "rate" else None
                    low.append(ys[-1] - min(rates) / ref if rates else 0.0)
                    high.append(max(rates) / ref - ys[-1] if rates else 0.0)
                # the whiskers span the runs' range: overlapping ones are no difference
                ax.bar(xs, ys, width * 0.95, color=colours[name],
                       label=name if panel == 0 else None,
                       yerr=[low, high] if any(low) or any(high) else None,
                       error_kw={"elinewidth": 0.7, "capsize": 1.5, "ecolor": "#333333"})
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set_title(title, fontsize=10)
            ax.set_ylabel("× stdlib asyncio")
            ax.grid(axis="y", alpha=0.3)
        second.set_xticks(range(len(cells)))
        second.set_xticklabels([c["label"].replace(", ", "\n") for c in cells], fontsize=8)
        first.tick_params(labelbottom=False)
        axes += [first, second]
    for k, (item, rows) in enumerate(instr):
        ax = fig.add_subplot(panels, 1, (2 if cells else 0) + k + 1)
        notes = [f"  ({r['syscalls_per_op']:.2f} syscalls)"
                 if r.get("syscalls_per_op") is not None else "" for r in rows]
        unit = Cell.from_doc(item).unit
        _bars(ax, rows, [r["instructions_per_op"] for r in rows], notes, colours,
              f"{Cell.from_doc(item).label}: user-space instructions per {unit} "
              "(callgrind{scale}): lower is better", "{:,.0f}")
        axes.append(ax)
    for k, (cell_doc, rows) in enumerate(memory):
        ax = fig.add_subplot(panels, 1, (2 if cells else 0) + len(instr) + k + 1)
        _bars(ax, rows, [r["rate"] / 1024 for r in rows], [""] * len(rows), colours,
              f"{Cell.from_doc(cell_doc).label}: KiB each{{scale}}, lower is better",
              "{:,.2f}")
        axes.append(ax)
    if cells:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper right", fontsize=8, frameon=False)
    fig.suptitle("zerosock.bench: servers on one machine", fontsize=12)
    fig.text(0.01, 0.005, "\n".join(summary_lines(doc["machine"])), fontsize=7,
             color="#444444", va="bottom")
    fig.tight_layout(rect=(0, 0.04, 0.86 if cells else 1.0, 0.97))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


__all__ = ["SCHEMA", "cell_doc", "dump_json", "format_markdown", "format_report", "plot",
           "write_report",
           "format_size"]
