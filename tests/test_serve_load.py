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
