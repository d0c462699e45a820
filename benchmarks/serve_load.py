"""Requests per second of a JSON /predict, per worker and per core: Apache Bench against `mnist-keras serve`.

    python benchmarks/serve_load.py [RUN] [--requests 3000] [--concurrency 32] [--repeats 3]
                                    [--workers 1 2] [--cores 1 2] [--keep-alive [--seconds 5]] [--loop L]
                                    [--out benchmarks/results]

For each number of cores and each number of workers, starts `mnist-keras
serve [RUN] --workers N` (the model that ships in the package without RUN) on
a free port of 127.0.0.1, under `taskset -c 0` for one core and `taskset -c
0,1` for two (the first cores this process may use), as a child process of
its own. Once /healthz answers and one /predict gives a digit, Apache Bench
(`ab`, a client nobody here wrote) posts the same 28×28 JSON pixels (a drawn
"3", as the drawing page would send it) `--requests` times at
`--concurrency` at once, first as a warm-up, then `--repeats` times; the row
is the median of the repeats' requests/s, p50 and p99 (ab's percentiles, in
ms) and failed requests (ab's failed plus non-2xx answers). ab opens a
connection per request (HTTP/1.0, no keep-alive), as in issue 23's figures.
With `--keep-alive` the client is wrk instead (another client nobody here
wrote; Debian's `wrk`): `--concurrency` HTTP/1.1 connections kept open, each
posting the same body again as soon as it has its answer, for `--seconds`
a run, as a client with a connection pool does; its requests/s, p50, p99
(wrk's `--latency` percentiles) and failures (socket errors and non-2xx
answers).
The server is then stopped with SIGTERM to the process id it was started
as, and must exit 0; only the processes this script started are ever
signalled. ab itself is not pinned: it runs on whichever core is free.

Prints a markdown table, the machine (CPU model and its widest vector
extension) and the load average before each row (other work on a shared
machine slows every row); `--out DIR` writes them too, as
DIR/serve_load.json and DIR/serve_load.md (serve_load_keep_alive.* with
`--keep-alive`).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import harness

AB = "ab"  # Apache Bench (apache2-utils)
WRK = "wrk"  # wrk (Debian's wrk), for --keep-alive
TASKSET = "taskset"  # util-linux
STARTUP_TIMEOUT_SECONDS = 120  # a worker loads ONNX Runtime and its model; two on one core take longer
STOP_TIMEOUT_SECONDS = 60  # SIGTERM drains (1 s by default) and then answers what it accepted
AB_TIMEOUT_SECONDS = 30  # ab's own per-request timeout (its -s); a request waiting longer fails
WARM_UP_REQUESTS = 500  # the first answers of a fresh process are slower (allocator, caches, the model's first run)
DRAWN_DIGIT = 3  # load.py's drawn "3": strokes in every part of the field, as a person's digit
AB_LINES = {  # what each figure is called in ab's report
    "requests_per_second": re.compile(r"^Requests per second:\s+([\d.]+)", re.MULTILINE),
    "complete": re.compile(r"^Complete requests:\s+(\d+)", re.MULTILINE),
    "failed": re.compile(r"^Failed requests:\s+(\d+)", re.MULTILINE),
    "non_2xx": re.compile(r"^Non-2xx responses:\s+(\d+)", re.MULTILINE),
    "p50_ms": re.compile(r"^\s+50%\s+(\d+)", re.MULTILINE),
    "p99_ms": re.compile(r"^\s+99%\s+(\d+)", re.MULTILINE),
}


WRK_LINES = {  # what each figure is called in wrk's report (with --latency)
    "requests_per_second": re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE),
    "complete": re.compile(r"^\s*(\d+) requests in ", re.MULTILINE),
    "p50": re.compile(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE),
    "p99": re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE),
}
WRK_SOCKET_ERRORS = re.compile(r"^\s+Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE)
WRK_NON_2XX = re.compile(r"^\s+Non-2xx or 3xx responses: (\d+)", re.MULTILINE)
MILLISECONDS_PER = {"us": 0.001, "ms": 1.0, "s": 1000.0}
# wrk posts the body from a Lua script: the file's bytes, as they are.
WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = io.open("{body}", "rb")
wrk.body = file:read("*all")
file:close()
"""


@dataclass(frozen=True)
class AbRun:
    """One client run's figures: throughput, latency percentiles (ms; whole numbers as ab prints them), failures."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    failed: int  # ab's failed requests (connect, receive, length, exceptions), or wrk's socket errors; plus non-2xx
    complete: int


def parse_ab(report: str) -> AbRun:
    """The figures of ab's text report; ValueError if one it always prints is missing."""
    found = {}
    for name, pattern in AB_LINES.items():
        match = pattern.search(report)
        if match is None and name != "non_2xx":  # ab prints that line only when there were some
            raise ValueError(f"ab's report has no {name.replace('_', ' ')} line:\n{report[-2000:]}")
        found[name] = match.group(1) if match else "0"
    return AbRun(requests_per_second=float(found["requests_per_second"]), p50_ms=int(found["p50_ms"]),
                 p99_ms=int(found["p99_ms"]), failed=int(found["failed"]) + int(found["non_2xx"]),
                 complete=int(found["complete"]))


def parse_wrk(report: str) -> AbRun:
    """The figures of wrk's text report (run with --latency); ValueError if one it always prints is missing."""
    found = {}
    for name, pattern in WRK_LINES.items():
        match = pattern.search(report)
        if match is None:
            raise ValueError(f"wrk's report has no {name.replace('_', ' ')} line:\n{report[-2000:]}")
        found[name] = float(match.group(1)) * MILLISECONDS_PER[match.group(2)] if name in ("p50", "p99") \
            else match.group(1)
    socket_errors = WRK_SOCKET_ERRORS.search(report)
    non_2xx = WRK_NON_2XX.search(report)
    failed = (sum(map(int, socket_errors.groups())) if socket_errors else 0) + (int(non_2xx.group(1)) if non_2xx else 0)
    return AbRun(requests_per_second=float(found["requests_per_second"]), p50_ms=round(found["p50"], 2),
                 p99_ms=round(found["p99"], 2), failed=failed, complete=int(found["complete"]))


def median_of(runs: list[AbRun]) -> dict[str, float]:
    """Each figure's median over the runs (figure by figure, so not necessarily one run's)."""
    return {"requests_per_second": round(statistics.median(run.requests_per_second for run in runs), 1),
            "p50_ms": statistics.median(run.p50_ms for run in runs),
            "p99_ms": statistics.median(run.p99_ms for run in runs),
            "failed": statistics.median(run.failed for run in runs)}


def pixels_body() -> bytes:
    """The JSON body: a drawn digit as the 28×28 pixels the page would send, as load.py makes them."""
    import load

    return load.make_payloads("pixels")[DRAWN_DIGIT].body


def first_cores(count: int) -> list[int] | None:
    """The first `count` cores this process may run on, or None when it may run on fewer."""
    ours = sorted(os.sched_getaffinity(0))
    return ours[:count] if len(ours) >= count else None


class Server:
    """`mnist-keras serve` pinned to `cores`, in a child process of ours; stopped only through its own pid."""

    def __init__(self, run: Path | None, workers: int, cores: list[int], log: Path, loop: str | None = None) -> None:
        self.port = harness.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        source = str(harness.BENCHMARKS.parent / "src")
        python_path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
        command = [TASKSET, "-c", ",".join(map(str, cores)), sys.executable, "-m", "mnist_keras.cli", "serve",
                   *([str(run)] if run else []), "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", str(workers), *(["--loop", loop] if loop else [])]
        self.log = log
        with log.open("wb") as output:  # taskset execs the server: the child's pid is the server's
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONPATH": python_path})

    def wait_until_ready(self, body: bytes) -> dict:
        """/healthz, then one /predict with `body`: its answer (which must name a digit)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    json.loads(response.read())
                break
            except OSError:
                if self.process.poll() is not None:
                    raise SystemExit(f"the server exited {self.process.returncode} before answering:\n"
                                     f"{harness.stderr_tail(self.log.read_text(errors='replace'))}") from None
                if time.monotonic() > deadline:
                    raise SystemExit(f"no answer from {self.url}/healthz within {STARTUP_TIMEOUT_SECONDS} s") from None
                time.sleep(0.2)
        request = urllib.request.Request(self.url + "/predict", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        if "digit" not in answer:
            raise SystemExit(f"/predict answered without a digit: {str(answer)[:200]}")
        return answer

    def stop(self) -> int:
        """SIGTERM to the server, whose shutdown stops its own workers; its exit code. If it outlives
        STOP_TIMEOUT_SECONDS it is killed, and so are the workers it started (found by its pid)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            for pid in [*children_of(self.process.pid), self.process.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.wait()
            return -signal.SIGKILL


def children_of(pid: int) -> list[int]:
    """The process ids `pid` started and that still run (Linux's /proc/PID/task/*/children)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return children


def run_ab(url: str, body_file: Path, requests: int, concurrency: int) -> AbRun:
    command = [AB, "-q", "-n", str(requests), "-c", str(concurrency), "-s", str(AB_TIMEOUT_SECONDS),
               "-p", str(body_file), "-T", "application/json", url + "/predict"]
    result = subprocess.run(command, capture_output=True, text=True, check=False,
                            timeout=AB_TIMEOUT_SECONDS + requests)  # far beyond any run that is working
    if result.returncode != 0:
        raise SystemExit(f"ab failed (exit {result.returncode}): {harness.stderr_tail(result.stderr)}")
    return parse_ab(result.stdout)


def run_wrk(url: str, script: Path, seconds: float, concurrency: int) -> AbRun:
    command = [WRK, "-t", "1", "-c", str(concurrency), "-d", f"{seconds:g}s", "--timeout", f"{AB_TIMEOUT_SECONDS}s",
               "--latency", "-s", str(script), url + "/predict"]
    result = subprocess.run(command, capture_output=True, text=True, check=False,
                            timeout=AB_TIMEOUT_SECONDS + 2 * seconds)
    if result.returncode != 0:
        raise SystemExit(f"wrk failed (exit {result.returncode}): {harness.stderr_tail(result.stderr)}")
    return parse_wrk(result.stdout)


def measure_row(run: Path | None, workers: int, cores: list[int], body_file: Path, requests: int,
                concurrency: int, repeats: int, logs: Path, keep_alive_seconds: float | None = None,
                loop: str | None = None) -> dict:
    """One row: the server with `workers` on `cores`, the client `repeats` times after a warm-up; the medians.
    The client is ab, or wrk for `keep_alive_seconds` a run."""
    load_before = harness.load_average()
    server = Server(run, workers, cores, logs / f"serve-{len(cores)}-cores-{workers}-workers.log", loop)
    try:
        answer = server.wait_until_ready(body_file.read_bytes())
        if keep_alive_seconds is None:
            client = functools.partial(run_ab, server.url, body_file, requests, concurrency)
            warm_up = functools.partial(run_ab, server.url, body_file, min(WARM_UP_REQUESTS, requests), concurrency)
        else:
            script = body_file.with_suffix(".lua")
            script.write_text(WRK_SCRIPT.format(body=body_file), encoding="utf-8")
            client = functools.partial(run_wrk, server.url, script, keep_alive_seconds, concurrency)
            warm_up = functools.partial(run_wrk, server.url, script, 1, concurrency)
        warm_up()
        runs = [client() for _ in range(repeats)]
    finally:
        exit_code = server.stop()
    return {"cores": len(cores), "cpus": cores, "workers": workers, **median_of(runs),
            "runs": [asdict(one) for one in runs], "digit": answer["digit"], "server_exit_code": exit_code,
            "load_average_before": round(load_before, 2)}


def report(results: dict) -> str:
    seconds = results.get("keep_alive_seconds")
    client = (f"wrk -c {results['concurrency']} -d {seconds:g}s (HTTP/1.1 keep-alive)" if seconds is not None
              else f"ab -n {results['requests']} -c {results['concurrency']} (no keep-alive)")
    lines = [f"machine: {results['machine']}",
             (f"model: {results['model']}; body: {results['body_bytes']:,} bytes of JSON 28x28 pixels; "
             f"{client}, median of {results['repeats']} runs after a warm-up; "
             f"event loop: {results['event_loop']}"),
             "", "| cores (taskset) | workers | requests/s | p50 ms | p99 ms | failed | load before |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in results["rows"]:
        lines.append(f"| {row['cores']} ({','.join(map(str, row['cpus']))}) | {row['workers']} | "
                     f"{row['requests_per_second']:,.0f} | {row['p50_ms']:g} | {row['p99_ms']:g} | "
                     f"{row['failed']:g} | {row['load_average_before']:.2f} |")
    lines += [f"| {count} | | skipped: this process may use fewer cores | | | | |" for count in results["skipped_cores"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="?", type=Path, help="run directory (default: the model that ships)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per ab run (default 3000)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests at once (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="ab runs per row, after a warm-up (default 3)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2], help="core counts (default 1 2)")
    parser.add_argument("--keep-alive", action="store_true",
                        help="the client is wrk, keeping its connections open, instead of ab")
    parser.add_argument("--seconds", type=float, default=5.0, help="with --keep-alive, seconds a run (default 5)")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"),
                        help="the server's event loop (mnist-keras serve --loop; default: serve's)")
    parser.add_argument("--out", type=Path, help="also write serve_load.json and serve_load.md here")
    args = parser.parse_args(argv)
    if min(args.requests, args.concurrency, args.repeats, *args.workers, *args.cores) < 1:
        parser.error("--requests, --concurrency, --repeats, --workers and --cores must be at least 1")
    if args.concurrency > args.requests and not args.keep_alive:
        parser.error("--concurrency cannot exceed --requests (ab refuses it)")
    if not args.seconds > 0:
        parser.error("--seconds must be positive")
    for tool in (WRK if args.keep_alive else AB, TASKSET):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (ab: apache2-utils; wrk: wrk; taskset: util-linux)")
    keep_alive_seconds = args.seconds if args.keep_alive else None

    with tempfile.TemporaryDirectory(prefix="serve-load-") as directory:
        body_file = Path(directory) / "pixels.json"
        body_file.write_bytes(pixels_body())
        rows, skipped = [], []
        for core_count in args.cores:
            cores = first_cores(core_count)
            if cores is None:
                skipped.append(core_count)
                continue
            for workers in args.workers:
                rows.append(measure_row(args.run, workers, cores, body_file, args.requests, args.concurrency,
                                        args.repeats, Path(directory), keep_alive_seconds, args.loop))
        results = {"machine": harness.machine_line(python=True), "model": str(args.run or "the shipped model"),
                   "body_bytes": body_file.stat().st_size, "requests": args.requests,
                   "concurrency": args.concurrency, "repeats": args.repeats, "keep_alive_seconds": keep_alive_seconds,
                   "event_loop": args.loop or "serve's default",
                   "rows": rows, "skipped_cores": skipped}
    table = report(results)
    print(table, end="")
    if args.out:
        command = "python benchmarks/serve_load.py " + " ".join(argv if argv is not None else sys.argv[1:])
        stem = "serve_load_keep_alive" if args.keep_alive else "serve_load"
        stem += f"_{args.loop}" if args.loop else ""
        harness.write_results(args.out, stem, results, f"`{command.strip()}`\n\n{table}")
    clean = all(run["failed"] == 0 for row in rows for run in row["runs"])
    return 0 if clean and all(row["server_exit_code"] == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
