"""The Apache Bench script (benchmarks/serve_load.py): reading ab's report, the medians, and one short run.

Functional checks only, never timings: the figures are read from ab's own
text, and the short run (full lane) must answer every request and stop the
server it started with exit code 0.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fakes import load_module

# What ab 2.3 prints for a run (the lines the script reads and some it does not), trimmed.
AB_REPORT = """\
Server Software:        uvicorn
Document Path:          /predict
Document Length:        3550 bytes

Concurrency Level:      32
Time taken for tests:   2.996 seconds
Complete requests:      3000
Failed requests:        2
   (Connect: 0, Receive: 0, Length: 2, Exceptions: 0)
{non_2xx}Requests per second:    1001.37 [#/sec] (mean)
Time per request:       31.956 [ms] (mean)

Percentage of the requests served within a certain time (ms)
  50%     31
  66%     33
  99%     48
 100%     63 (longest request)
"""


@pytest.fixture(scope="module")
def serve_load():
    return load_module(Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py", "serve_load_benchmark")


def test_ab_report_figures_are_read(serve_load):
    run = serve_load.parse_ab(AB_REPORT.format(non_2xx=""))
    assert run == serve_load.AbRun(requests_per_second=1001.37, p50_ms=31, p99_ms=48, failed=2, complete=3000)
    # Answers other than 2xx count as failed too (ab names them apart, only when there are some).
    with_errors = serve_load.parse_ab(AB_REPORT.format(non_2xx="Non-2xx responses:      7\n"))
    assert with_errors.failed == 2 + 7


def test_a_report_without_its_percentiles_is_refused(serve_load):
    cut = AB_REPORT.format(non_2xx="").split("Percentage")[0]
    with pytest.raises(ValueError, match="p50"):
        serve_load.parse_ab(cut)


def test_each_figure_is_its_median_over_the_runs(serve_load):
    runs = [serve_load.AbRun(900.0, 30, 60, 0, 3000), serve_load.AbRun(1100.0, 28, 45, 1, 3000),
            serve_load.AbRun(1000.0, 35, 50, 0, 3000)]
    assert serve_load.median_of(runs) == {"requests_per_second": 1000.0, "p50_ms": 30, "p99_ms": 50, "failed": 0}


@pytest.mark.slow
def test_a_short_run_answers_every_request_and_stops_its_server(serve_load, tiny_run, tmp_path, capsys):
    missing = [tool for tool in ("ab", "taskset") if shutil.which(tool) is None]
    assert not missing, f"{' and '.join(missing)} not installed: apt-get install apache2-utils util-linux"
    status = serve_load.main([str(tiny_run), "--requests", "60", "--concurrency", "4", "--repeats", "1",
                              "--workers", "1", "--cores", "1", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "serve_load.json").read_text())
    assert status == 0
    [row] = results["rows"]
    assert row["cores"] == 1 and row["workers"] == 1 and row["server_exit_code"] == 0
    assert [run["complete"] for run in row["runs"]] == [60] and row["failed"] == 0
    assert "| 1 (" in capsys.readouterr().out and (tmp_path / "serve_load.md").is_file()


# What wrk 4.1 prints for a run with --latency (the lines the script reads and some it does not).
WRK_REPORT = """\
Running 6s test @ http://127.0.0.1:8811/predict
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    33.46ms   39.42ms 575.16ms   97.40%
    Req/Sec     1.12k   110.22     1.30k    80.00%
  Latency Distribution
     50%  850.00us
     75%   32.35ms
     90%   34.93ms
     99%    1.25s
  6660 requests in 6.00s, 23.97MB read
{errors}Requests/sec:   1109.49
Transfer/sec:      4.00MB
"""


def test_wrk_report_figures_are_read_in_milliseconds(serve_load):
    run = serve_load.parse_wrk(WRK_REPORT.format(errors=""))
    assert run == serve_load.AbRun(requests_per_second=1109.49, p50_ms=0.85, p99_ms=1250.0, failed=0, complete=6660)
    # Socket errors and answers other than 2xx or 3xx are failures.
    errors = "  Socket errors: connect 1, read 2, write 0, timeout 3\n  Non-2xx or 3xx responses: 4\n"
    assert serve_load.parse_wrk(WRK_REPORT.format(errors=errors)).failed == 1 + 2 + 3 + 4
    with pytest.raises(ValueError, match="p99"):
        serve_load.parse_wrk(WRK_REPORT.format(errors="").replace("99%", "98%"))
