"""benchmarks/time_to_accuracy.py: its summaries on made-up runs, and its --quick mode writing every field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import load_module

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "time_to_accuracy.py"
ROW_FIELDS = {"key", "name", "kind", "seeds", "runs", "curve", "train_seconds_median", "train_seconds_first",
              "test_accuracy_mean",
              "test_accuracy_min", "time_to", "load_average", "times_faster_than"}


tta = load_module(SCRIPT, "time_to_accuracy")


def run(seed: int, points: list[tuple[float, float]], final: tuple[float, float] | None = None) -> dict:
    rows = [{"epoch": epoch, "seconds": seconds, "test_accuracy": accuracy}
            for epoch, (seconds, accuracy) in enumerate(points, start=1)]
    seconds, accuracy = final or points[-1]
    return {"seed": seed, "points": rows, "final": {"epochs": len(points), "seconds": seconds,
                                                    "test_accuracy": accuracy}}


def test_time_to_a_target_is_the_first_point_where_the_mean_over_seeds_reaches_it():
    runs = [run(1, [(2.0, 0.980), (4.0, 0.986), (6.0, 0.991)]),
            run(2, [(3.0, 0.982), (5.0, 0.984), (7.0, 0.989)])]
    row = tta.summarise("peer", "a peer", "peer", runs, load_average=0.5)
    assert [point["seconds"] for point in row["curve"]] == [2.5, 4.5, 6.5]
    assert row["time_to"] == {"0.9843": 4.5, "0.9900": 6.5, "0.9950": None}
    assert row["train_seconds_median"] == 6.5 and row["test_accuracy_mean"] == pytest.approx(0.990)


def test_a_target_never_reached_has_no_time_and_a_run_reporting_only_its_end_has_one_point():
    row = tta.summarise("seed", "a recipe", "recipe", [run(1, [(1.5, 0.986)]), run(2, [(2.5, 0.984)])], 0.0)
    assert row["curve"] == [{"epoch": 1, "seconds": 2.0, "test_accuracy": pytest.approx(0.985)}]
    assert row["time_to"] == {"0.9843": 2.0, "0.9900": None, "0.9950": None}


def test_ratios_say_how_many_times_faster_than_each_peer_a_row_trains():
    rows = [tta.summarise("speedrun", "ours", "recipe", [run(1, [(2.0, 0.99)])], 0.0),
            tta.summarise("slow_peer", "theirs", "peer", [run(1, [(8.0, 0.99)])], 0.0)]
    tta.add_ratios(rows)
    assert rows[0]["times_faster_than"] == {"slow_peer": 4.0}
    assert rows[1]["times_faster_than"] == {"slow_peer": 1.0}


def test_cpu_features_come_from_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert tta.cpu_features(cpuinfo) == {"avx512": True, "amx": False, "bf16": True}
    assert tta.cpu_features(tmp_path / "missing") == {"avx512": None, "amx": None, "bf16": None}


def test_a_missing_library_makes_a_peer_print_one_skip_line(capsys):
    common = load_module(BENCHMARKS / "peers" / "common.py", "peers_common")
    with pytest.raises(SystemExit) as exit_info:
        common.skip_unless_installed("no_such_module_for_the_benchmark")
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.splitlines() == ['{"skipped": "no_such_module_for_the_benchmark is not installed"}']


def test_the_table_lists_unavailable_rows_and_the_figure_draws_every_row():
    rows = [tta.summarise("fast", "ours", "recipe", [run(1, [(1.0, 0.97), (2.0, 0.985)])], 0.0),
            tta.summarise("peer", "theirs", "peer", [run(1, [(5.0, 0.99)])], 0.0)]
    tta.add_ratios(rows)
    results = {"machine": "test machine", "cpu_features": {"avx512": False, "amx": False, "bf16": None},
               "mode": "full", "targets": list(tta.TARGETS), "rows": rows,
               "unavailable": [{"key": "speedrun", "name": "mnist-keras --recipe speedrun", "kind": "recipe", "reason": "unknown"}]}
    table = tta.markdown_table(results)
    assert "test machine" in table and "bf16 unknown" in table and "unavailable: unknown" in table
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert len({line.count("|") for line in lines}) == 1  # every row has as many cells as the header
    assert lines[0].startswith("| row | × faster than peer |") and "to 99.50%" in lines[0]
    assert lines[2].startswith("| ours | **2.50×** |")  # 5.0 s against 2.0 s
    figure = tta.accuracy_figure(rows, results["targets"])
    assert len(figure.axes[0].lines) == len(rows) + len(results["targets"])


def test_row_seeds_override_the_seeds_of_one_row_and_refuse_unknown_rows(capsys):
    options = tta.parse_arguments(["--seeds", "1", "2", "3", "--row-seeds", "cnn=4,5", "pytorch_mnist=7"])
    assert options.seeds == [1, 2, 3] and options.row_seeds == {"cnn": [4, 5], "pytorch_mnist": [7]}

    for bad in ("cnnn=1", "cnn=one"):
        with pytest.raises(SystemExit) as stopped:
            tta.parse_arguments(["--row-seeds", bad])
        assert stopped.value.code == 2
        assert bad.partition("=")[0] in capsys.readouterr().err


@pytest.mark.real_data
@pytest.mark.slow
def test_quick_mode_writes_every_field(tmp_path, real_mnist):
    completed = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
                               capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    results = json.loads((tmp_path / "time_to_accuracy.json").read_text())

    assert results["mode"] == "quick" and results["machine"]
    assert set(results["cpu_features"]) == {"avx512", "amx", "bf16"}
    names = {row["key"] for row in results["rows"]}
    unavailable = {row["key"] for row in results["unavailable"]}
    assert "seed" in names and "keras_mnist_convnet" in names
    # The PyTorch peer runs where torch is installed and is listed as unavailable where it is not.
    assert "train_mnist_fast" in names | unavailable
    for row in results["rows"]:
        assert set(row) == ROW_FIELDS
        assert row["seeds"] == [1] and row["train_seconds_median"] > 0 and 0 <= row["test_accuracy_mean"] <= 1
        assert set(row["time_to"]) == {"0.9843", "0.9900", "0.9950"}
        assert row["curve"] and set(row["times_faster_than"]) == {r["key"] for r in results["rows"]
                                                                 if r["kind"] == "peer"}
    table = (tmp_path / "time_to_accuracy.md").read_text()
    assert results["machine"] in table and table in completed.stdout
    assert (tmp_path / "time_to_accuracy.png").stat().st_size > 0
