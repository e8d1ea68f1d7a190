"""Runs the quick benchmarks and writes their rows in docs/benchmarks.md.

    make bench                          # every quick bench, a few minutes each
    make bench BENCH="fault_freeze"     # some of them, or a long one by name
    make bench BENCH_ARGS=--dry-run     # what would run; runs and writes nothing
    make bench BENCH_ARGS=--short       # tiny sizes: proves each bench runs, writes nothing
    .venv/bin/python bench/run.py --list

Each bench's output is kept in bench/results/<name>.txt, and the figures of
its rows are read from that output with the patterns below: a figure the
bench did not print stops the run, it is never filled in. A row is known by
its area and figure; the rows a run measures replace their namesakes between
the table's markers (or join their area's rows), and every other row stays.
Run it on an idle machine: the figures are only as quiet as the machine.
"""

import argparse
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results"
BEGIN, END = "<!-- bench-table:begin -->", "<!-- bench-table:end -->"
HEADER = [
    "| Area | Figure | Result | Limit | Command | Date | Machine |",
    "| --- | --- | --- | --- | --- | --- | --- |",
]


@dataclass(frozen=True)
class Figure:
    """One row's measured part: what is measured, the result, its limit."""

    area: str
    figure: str
    result: str
    limit: str = "—"


@dataclass(frozen=True)
class Row:
    """A row of the table; `command` is its cell as written (in backticks)."""

    area: str
    figure: str
    result: str
    limit: str
    command: str
    date: str
    machine: str

    @property
    def key(self) -> tuple[str, str]:
        return self.area, self.figure

    def line(self) -> str:
        cells = [self.area, self.figure, self.result, self.limit, self.command, self.date]
        return "| " + " | ".join([*cells, self.machine]) + " |"


class MissingFigure(RuntimeError):
    pass


# --- reading figures from a bench's output ------------------------------------------------


def find(pattern: str, output: str) -> re.Match:
    match = re.search(pattern, output, re.MULTILINE)
    if match is None:
        raise MissingFigure(f"the bench printed nothing matching {pattern!r}")
    return match


def ingest_cpu(output: str) -> list[Figure]:
    cpu, wall = find(r"single-event POST: (\d+) us CPU, (\d+) us wall", output).groups()
    figure = "CPU of Django, ninja and the ingest per single-event POST, in process"
    return [Figure("ingest", figure, f"**{cpu} µs** ({wall} µs wall)")]


# The goals of the ingest figures (batch vs raw COPY; single events on 2 CPUs).
INGEST_RATIO = "≥ 0.75"


def ingest(output: str) -> list[Figure]:
    http = find(r"^HTTP batch ingest: ([\d,]+) events/s", output)[1]
    copy = find(r"^raw COPY:\s+([\d,]+) events/s", output)[1]
    ratio = find(r"^ratio HTTP/COPY:\s+([\d.]+)", output)[1]
    context = find(r"^events: (\d+), batch (\d+), (\d+) clients, (\d+) gunicorn workers", output)
    figure = "batch POSTs vs raw `COPY` into the same indexed table"
    shape = f"{int(context[1]):,} events, {context[2]}-event batches, {context[3]} clients"
    result = f"{http} vs {copy} events/s: **{ratio}** ({shape}, {context[4]} workers)"
    return [Figure("ingest", figure, result, INGEST_RATIO)]


def ingest_http(output: str) -> list[Figure]:
    served = find(r"^gunicorn: (\d+) workers x (\d+) threads", output)
    single = find(
        r"^single-event POST \((wrk|Python clients)[^)]*\): ([\d,]+) events/s.*"
        r"p50 ([\d.]+) ms, p99 ([\d.]+) ms",
        output,
    )
    shape = f"{single[1]}, gunicorn {served[1]} × {served[2]}"
    figures = [
        Figure("ingest", "single-event POSTs/s", f"**{single[2]}/s** ({shape})", "≥ 1,500/s"),
        Figure(
            "ingest",
            "single-event POST latency p50 / p99",
            f"{single[3]} / {single[4]} ms",
            "p99 < 30 ms",
        ),
    ]
    if "batch/COPY" in output:
        batch = find(r"^batch POST \((\d+)/request.*: ([\d,]+) events/s", output)
        copy = find(r"^raw COPY into the same indexed table: ([\d,]+) events/s", output)[1]
        ratio = find(r"^batch/COPY: ([\d.]+)", output)[1]
        result = f"**{ratio}** ({batch[2]} vs {copy} events/s)"
        figure = f"{int(batch[1]):,}-event batch POSTs vs raw `COPY` into the same indexed table"
        figures.append(Figure("ingest", figure, result, INGEST_RATIO))
    return figures


def load(output: str) -> list[Figure]:
    clients = find(
        r"^clients: (\d+) single-event, (\d+) x (\d+)-event batches.*; ([\d.]+) s$", output
    )
    restart = find(r"^PostgreSQL restarted at (\d+) s", output)[1]
    rate = find(r"^throughput: ([\d,]+) events/s, ([\d,]+) requests/s", output)
    latency = find(r"^latency per request: p50 ([\d.]+) ms, p99 ([\d.]+) ms", output)
    lost = find(r"^lost: (\d+)\s+unexpected extra: (\d+)", output)
    verdict = find(r"^RESULT: ((?:PASS|FAIL).*)$", output)[1]
    figure = (
        f"{clients[1]} single-event + {clients[2]} batch ({clients[3]}) clients for "
        f"{float(clients[4]):.0f} s, `pg_ctl restart` at {restart} s"
    )
    result = (
        f"**{rate[1]} events/s**, {rate[2]} requests/s, p50 {latency[1]} ms, p99 {latency[2]} ms;"
        f" {lost[1]} lost, {lost[2]} extra; {verdict}"
    )
    return [Figure("faults", figure, result, "0 lost, 0 doubled")]


def fault_freeze(output: str) -> list[Figure]:
    froze = find(r"^froze \d+ PostgreSQL processes for ([\d.]+) s", output)[1]
    requests = find(r"^requests: (\d+);", output)[1]
    slowest = find(r"^slowest answer: ([\d.]+) s", output)[1]
    stored = find(r"^events acknowledged: (\d+) .*stored once: (\d+)", output)
    back = find(r"^service back after SIGCONT: (.+)$", output)[1]
    failed = re.findall(r"^FAILED: (.+)$", output, re.MULTILINE)
    result = (
        f"{requests} requests, slowest answer **{slowest} s**, {stored[2]} of {stored[1]}"
        f" acknowledged events stored exactly once, service back {back} after SIGCONT"
    )
    if failed:
        result += "; FAILED: " + "; ".join(failed)
    figure = f"scratch PostgreSQL stopped (SIGSTOP) for {float(froze):.0f} s under load"
    return [Figure("faults", figure, result, "slowest answer ≤ 10 s")]


SLOW_ROW = re.compile(
    r"^(gunicorn alone \(make run\)|nginx \+ gunicorn)\s+(\d+ x \d+)\s+(headers|body)\s+(\S+)"
    r"\s+(\d+)",
    re.MULTILINE,
)


def slow_clients(output: str) -> list[Figure]:
    rows = SLOW_ROW.findall(output)
    if not rows:
        raise MissingFigure("the bench printed no table of slow connections")
    most = find(r"still answering with (\d+) slow connections open", output)[1]
    parts = []
    for served, shape in dict.fromkeys((s, w) for s, w, *_ in rows):
        blocks = {kind: at for s, w, kind, at, _ in rows if (s, w) == (served, shape)}
        said = ", ".join(
            f"{kind} **{'none of ' + most if at == '-' else at}**" for kind, at in blocks.items()
        )
        parts.append(f"{served.replace('make run', '`make run`')} {shape}: {said}")
    figure = "trickling connections (1 byte/s) until `GET /healthz` waits > 2 s"
    return [Figure("slow clients", figure, "; ".join(parts))]


PAGE_ROW = re.compile(
    r"^(?P<page>\S.*?)\s+(?P<cold>\d+)\s+500\s+(?P<warm>\d+)\s+200\s+[\d.]+\s+(?:pass|FAIL)"
    r"(?:\s+(?P<drawn_cold>\d+) / (?P<drawn_warm>\d+))?\s*$",
    re.MULTILINE,
)


def pages_browser(output: str) -> list[Figure]:
    pages = [m.groupdict() for m in PAGE_ROW.finditer(output)]
    passed, total = find(r"^(\d+) of (\d+) pages within both limits", output).groups()
    if not pages:
        raise MissingFigure("the bench printed no table of pages")
    slowest = max(pages, key=lambda p: int(p["cold"]))

    def spread(column: str, rows: list[dict]) -> str:
        values = sorted(int(p[column]) for p in rows)
        return f"{values[0]:,}–{values[-1]:,}"

    load_result = (
        f"{passed} of {total} within both limits: cold **{spread('cold', pages)} ms**"
        f" (slowest: {slowest['page']} {slowest['cold']}), warm **{spread('warm', pages)} ms**"
    )
    charts = [p for p in pages if p["drawn_cold"]]
    figures = [
        Figure(
            "pages in a browser",
            "load event of every page in Chromium (60,000 demo events, gunicorn as `make run`),"
            " cold (empty cache) / warm (median of 5)",
            load_result,
            "500 ms cold / 200 ms warm",
        ),
    ]
    if charts:
        drawn = "; ".join(f"{p['page']} {p['drawn_cold']} / {p['drawn_warm']}" for p in charts)
        figures.append(
            Figure("pages in a browser", "every chart on a chart page drawn, cold / warm ms", drawn)
        )
    return figures


# --- the benches --------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    name: str
    args: tuple[str, ...]
    figures: Callable[[str], list[Figure]] | None  # None: a long one; its rows are by hand
    short: tuple[str, ...] = ()  # tiny sizes for --short
    quick: bool = True
    # Exits 1 when one of its own checks fails: its rows say which, the run goes on.
    checks: bool = False

    @property
    def command(self) -> str:
        return " ".join([f"bench/{self.name}.py", *self.args])


BENCHES = [
    Bench("ingest_cpu", (), ingest_cpu, ("--requests", "300", "--warmup", "50")),
    Bench("ingest", ("--events", "100000"), ingest, ("--events", "5000", "--batch", "1000")),
    Bench("ingest_http", ("--seconds", "15"), ingest_http,
          ("--seconds", "3", "--events", "5000", "--batch", "1000")),
    Bench("load", (), load, ("--seconds", "8", "--restart-at", "3"), checks=True),
    Bench("fault_freeze", (), fault_freeze, ("--freeze", "4", "--before", "1", "--after", "3"),
          checks=True),
    Bench("slow_clients", ("--threads", "4", "16"), slow_clients, ("--max", "12")),
    Bench("pages_browser", (), pages_browser, ("--events", "3000", "--runs", "1")),
    # The long ones: 1M to 10M events, an hour or more each. Their rows in
    # docs/benchmarks.md carry the commands that measured them.
    Bench("dashboards", ("--events", "10000000"), None, quick=False),
    Bench("export", ("--events", "10000000"), None, quick=False),
    Bench("facilities", ("--events", "1000000"), None, quick=False),
    Bench("table_size", ("--events", "1000000", "--reindex"), None, quick=False),
    Bench("adopt", ("--rows", "1000000"), None, quick=False),
]  # fmt: skip


# --- the table ----------------------------------------------------------------------------


def machine() -> str:
    """`nproc` CPUs and the CPU's model name."""
    cpus = len(os.sched_getaffinity(0))
    model = platform.processor() or "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{cpus} CPUs, {model}"


def parse_rows(lines: list[str]) -> list[Row]:
    rows = []
    for line in lines:
        cells = [
            cell.strip() for cell in line.strip().removeprefix("|").removesuffix("|").split(" | ")
        ]
        if len(cells) != 7:
            raise ValueError(f"a table row without 7 cells: {line!r}")
        rows.append(Row(*cells))
    return rows


def rewrite(text: str, measured: list[Row]) -> str:
    """`text` (docs/benchmarks.md) with `measured` in its table: each in place
    of the row of the same area and figure, else after its area's last row,
    else at the end; every other row as it was."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"docs/benchmarks.md needs one {BEGIN} and one {END}")
    before, rest = text.split(BEGIN)
    table, after = rest.split(END)
    lines = [line for line in table.strip().splitlines() if line.strip()]
    if lines[:2] != HEADER:
        raise ValueError("the table between the markers does not start with its header")
    rows = parse_rows(lines[2:])
    for row in measured:
        keys = [r.key for r in rows]
        if row.key in keys:
            rows[keys.index(row.key)] = row
        else:
            areas = [r.area for r in rows]
            at = len(areas) - areas[::-1].index(row.area) if row.area in areas else len(rows)
            rows.insert(at, row)
    body = "\n".join([*HEADER, *(r.line() for r in rows)])
    return f"{before}{BEGIN}\n{body}\n{END}{after}"


# --- running ------------------------------------------------------------------------------


def run(bench: Bench, args: tuple[str, ...]) -> str:
    """Run `bench` with `args`, its output shown and kept; the output."""
    RESULTS.mkdir(exist_ok=True)
    command = [sys.executable, str(ROOT / "bench" / f"{bench.name}.py"), *args]
    print(f"$ {' '.join(['bench/' + bench.name + '.py', *args])}", flush=True)
    lines = []
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    output = "".join(lines)
    (RESULTS / f"{bench.name}.txt").write_text(output)
    if process.returncode and not (bench.checks and process.returncode == 1):
        raise RuntimeError(f"bench/{bench.name}.py exited {process.returncode}")
    return output


def measured_rows(bench: Bench, output: str, today: str, where: str) -> list[Row]:
    return [
        Row(f.area, f.figure, f.result, f.limit, f"`{bench.command}`", today, where)
        for f in bench.figures(output)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benches to run (default: the quick ones)")
    parser.add_argument("--list", action="store_true", help="name every bench and its command")
    parser.add_argument("--dry-run", action="store_true", help="say what would run, run nothing")
    parser.add_argument("--short", action="store_true", help="tiny sizes; writes nothing")
    parser.add_argument("--no-write", action="store_true", help="print the rows, keep the file")
    args = parser.parse_args()
    known = {b.name: b for b in BENCHES}
    if args.list:
        for b in BENCHES:
            print(f"{b.name:14} {'quick' if b.quick else 'long ':6} {b.command}")
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"no bench {', '.join(unknown)}; --list names them")
    chosen = [known[n] for n in args.names] or [b for b in BENCHES if b.quick]
    if args.dry_run:
        for b in chosen:
            rows = "its rows rewritten" if b.figures else "its rows kept by hand"
            print(f"would run: {b.command}  ({rows})")
        return 0
    today, where = datetime.now(UTC).date().isoformat(), machine()
    measured: list[Row] = []
    for bench in chosen:
        output = run(bench, bench.short if args.short else bench.args)
        if bench.figures and not args.short:
            measured += measured_rows(bench, output, today, where)
        elif bench.figures:
            bench.figures(output)  # the patterns still find every figure
    for row in measured:
        print(row.line())
    if measured and not args.no_write:
        TABLE.write_text(rewrite(TABLE.read_text(), measured))
        print(f"{len(measured)} rows written in {TABLE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
