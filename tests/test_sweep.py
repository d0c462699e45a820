"""Sweeps on Ray Tune: space files, an embedded sweep killed and resumed, two-node clusters that lose a node.

Clusters come two ways: `ray.cluster_utils.Cluster` in this process, and `ray start` processes with one
token, as the README's recipe starts them (which also check the one-line errors of `--address`).

The Ray tests train on a slice of the real MNIST (`--limit`), small networks, few epochs.
Ray runs on loopback only; every process a test starts is stopped by its id (never `ray stop`).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mnist_keras import cli
from mnist_keras.errors import ConfigError
from mnist_keras.sweeps.space import load_space

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

SRC = Path(__file__).resolve().parents[1] / "src"
# A slice of the training set that trains in well under a second per epoch.
LIMIT = 2000
SMALL_NETWORK = """
hidden_units = [32, 16]
dropout_rates = [0.1, 0.1]
batch_norm = [false, false]
"""
SPACE = f"""
[recipe]
epochs = 2
{SMALL_NETWORK}
[search]
learning_rate = {{ loguniform = [1e-3, 3e-3] }}
seed = {{ grid = [1, 2] }}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def read_trials(out: Path) -> list[dict[str, str]]:
    with open(out / "trials.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------- space files (no Ray started)


BAD_SPACES = {
    "unknown field": ("[search]\nlearnin_rate = { choice = [0.1] }\n", "unknown recipe setting"),
    "unknown kind": ("[search]\nlearning_rate = { normal = [0.1, 0.2] }\n", "unknown kind"),
    "two kinds": ("[search]\nlearning_rate = { choice = [0.1], uniform = [0.1, 0.2] }\n", "exactly one"),
    "reversed range": ("[search]\nlearning_rate = { uniform = [0.2, 0.1] }\n", "low < high"),
    "log of zero": ("[search]\nlearning_rate = { loguniform = [0, 0.1] }\n", "positive low bound"),
    "refused value": ("[search]\ndropout_rates = { choice = [[0.3, 0.3, 2.0]] }\n", "refused"),
    "refused extreme": ("[search]\nbatch_size = { randint = [0, 64] }\n", "refused"),
    "real draw for int": ("[search]\nepochs = { uniform = [1, 3] }\n", "randint"),
    "unknown table": ("[serach]\nseed = { grid = [1] }\n", "unknown table"),
    "bad fixed recipe": ("[recipe]\nepochs = 0\n[search]\nseed = { grid = [1] }\n", "[recipe]"),
    "nothing searched": ("[recipe]\nepochs = 1\n", "no recipe field"),
    "not toml": ("[search\n", "not valid TOML"),
}


@pytest.mark.parametrize("name", sorted(BAD_SPACES))
def test_space_file_errors_are_one_line_and_exit_2_before_any_trial(name, tmp_path, capsys):
    text, expected = BAD_SPACES[name]
    out = tmp_path / "sweep"
    code = cli.main(["sweep", str(write(tmp_path / "space.toml", text)), "--out", str(out)])
    error = capsys.readouterr().err
    assert code == 2
    assert error.count("\n") == 1 and expected in error
    assert not out.exists()  # nothing written, no trial started


def test_space_file_extremes_and_record_round_trip(tmp_path):
    space = load_space(write(tmp_path / "space.toml", SPACE))
    assert space.searched == ("learning_rate", "seed")
    assert space.base.epochs == 2 and space.base.hidden_units == (32, 16)
    assert type(space).from_record(space.to_record()) == space
    assert space.config_for({"learning_rate": 2e-3, "seed": 2}).learning_rate == 2e-3
    with pytest.raises(ConfigError):
        load_space(tmp_path / "missing.toml")


def test_sweep_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if Ray were not installed
    code = cli.main(["sweep", str(write(tmp_path / "space.toml", SPACE)), "--out", str(tmp_path / "sweep")])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert "pip install 'mnist-keras[sweep]'" in error


def test_existing_sweep_needs_resume(tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.json").write_text("{}")
    code = cli.main(["sweep", str(write(tmp_path / "space.toml", SPACE)), "--out", str(out)])
    assert code == 2 and "--resume" in capsys.readouterr().err


# ---------------------------------------------------------------- embedded Ray: a sweep, its driver killed, resumed


def sweep_command(space: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mnist_keras.cli", "sweep", str(space), "--out", str(out),
            "--limit", str(LIMIT), "--no-onnx", "--max-concurrent", "1", *extra]


def child_environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(SRC), os.environ.get("PYTHONPATH"))))}


def descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def finished_trials(out: Path) -> list[Path]:
    """Published trial runs (a staging directory, .<id>.partial, is not one yet)."""
    return sorted(path.parent for path in (out / "trials").glob("*/metrics.json")
                  if not path.parent.name.startswith("."))


@pytest.mark.slow
@pytest.mark.real_data
def test_embedded_sweep_survives_its_driver_being_killed_and_resumes(tmp_path, real_mnist):
    space, out = write(tmp_path / "space.toml", SPACE), tmp_path / "sweep"
    driver = subprocess.Popen(sweep_command(space, out), env=child_environment(), start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not finished_trials(out) and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert finished_trials(out), "no trial finished before the deadline"
        first = finished_trials(out)[0]
        first_history = (first / "history.csv").read_text()
        started = descendants(driver.pid)
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and everything in its session
        driver.wait(timeout=30)
        kill_pids(started)  # any Ray process that left the session
    finally:
        if driver.poll() is None:
            kill_pids(descendants(driver.pid))
            driver.kill()
    assert not (out / "trials.csv").exists()

    resumed = subprocess.run(sweep_command(space, out, "--resume"), env=child_environment(), capture_output=True,
                             text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = read_trials(out)
    assert [row["status"] for row in rows] == ["completed", "completed"]
    assert set(rows[0]) >= {"trial_id", "learning_rate", "seed", "status", "epochs_trained", "best_val_loss",
                            "test_accuracy", "train_seconds"}
    # The finished trial was not trained again: its epochs are the same (a trial killed between publishing its
    # run and Tune recording it as finished is resumed from its final checkpoint, which trains nothing).
    assert (first / "history.csv").read_text() == first_history
    for result_file in (out / "tune").glob(f"*{first.name}*/result.json"):
        reports = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        epochs = [report["epoch"] for report in reports if report.get("epoch") is not None]
        assert epochs == sorted(set(epochs)), (result_file, epochs)  # no epoch ran twice
    best = min(rows, key=lambda row: float(row["best_val_loss"]))
    assert json.loads((out / "best" / "metrics.json").read_text()) == \
        json.loads((out / "trials" / best["trial_id"] / "metrics.json").read_text())
    for name in ("model.keras", "config.json", "history.csv", "report.html"):
        assert (out / "best" / name).is_file()
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 2 and "http" not in report.replace("http-equiv", "")
    assert "best trial (lowest validation loss)" in resumed.stdout
    assert (out / "tune" / "tuner.pkl").is_file()  # Ray's own experiment directory lives under --out


# ---------------------------------------------------------------- a two-node loopback cluster loses a node

# The cluster and its second node, for the callback below: Tune pickles its callbacks, a Cluster does not pickle.
NODE_LOSS: dict = {}


try:
    import psutil
    from ray import tune
except ImportError:  # `make install-test` installs them; the test that needs them fails without them
    tune = None

if tune is not None:

    class KillVictimNode(tune.Callback):
        """SIGKILLs the second node as soon as a trial running there reports epoch 1.

        Defined at module level and reading NODE_LOSS, so Tune pickles it by reference.
        """

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("epoch") is not None:
                NODE_LOSS["reported"].setdefault(trial.trial_id, []).append(result["epoch"])
            if NODE_LOSS["killed"] or result.get("epoch") != 1:
                return
            try:
                parents = [process.pid for process in psutil.Process(result["pid"]).parents()]
            except psutil.NoSuchProcess:
                return
            if NODE_LOSS["raylet"] in parents:
                NODE_LOSS["killed"][trial.trial_id] = result["epoch"]
                NODE_LOSS["cluster"].remove_node(NODE_LOSS["victim"], allow_graceful=False)



@pytest.mark.slow
@pytest.mark.real_data
def test_cluster_sweep_survives_losing_a_node_and_resumes_after_the_last_checkpoint(tmp_path, real_mnist,
                                                                                   monkeypatch):
    assert tune is not None, "Ray Tune is not installed: `make install-test` installs it"
    from ray.cluster_utils import Cluster

    from mnist_keras.sweeps.tune import SweepPlan, run_sweep

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(SRC), os.environ.get("PYTHONPATH")))))
    space = load_space(write(tmp_path / "space.toml", SPACE.replace("epochs = 2", "epochs = 4")))
    # Not 127.0.0.1: Ray rewrites that to the host's network address when a driver joins.
    loopback = {"node_ip_address": "127.0.0.2", "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, **loopback})
    try:
        victim = cluster.add_node(num_cpus=1, **loopback)
        NODE_LOSS.update(cluster=cluster, victim=victim, raylet=victim.all_processes["raylet"][0].process.pid,
                         killed={}, reported={})
        lines: list[str] = []
        plan = SweepPlan(space, tmp_path / "sweep", address=cluster.address, max_concurrent=2, limit=LIMIT,
                         export_onnx=False)
        result = run_sweep(plan, progress=lines.append, callbacks=[KillVictimNode()])
    finally:
        cluster.shutdown()
    killed, reported = NODE_LOSS.pop("killed"), NODE_LOSS.pop("reported")
    NODE_LOSS.clear()
    assert killed, "no trial ran on the second node"
    (trial_id,) = killed
    assert [row["status"] for row in result.rows] == ["completed", "completed"]
    assert any("retrying from its checkpoint" in line for line in lines)
    # Every epoch the lost trial reported to the driver, across both attempts: epoch 1 was not run again. (Counted
    # as the driver received them: Tune may start the trial's result.json afresh when it restores the trial.)
    assert reported[trial_id] == [1, 2, 3, 4], reported
    history = (tmp_path / "sweep" / "trials" / trial_id / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 4


# ---------------------------------------------------------------- a cluster started as the README says (ray start)

RAY_CLI = Path(sys.executable).with_name("ray")
LOOPBACK = "127.0.0.2"  # not 127.0.0.1: Ray rewrites that to the host's network address when a driver joins
# Token variables a test's processes must not inherit from whoever runs the suite.
TOKEN_VARIABLES = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")
NODE_READY_S = 120  # a generous bound on `ray start` on a busy machine; not an assertion on speed


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def generate_token(home: Path) -> str:
    """`ray get-auth-token --generate`, run in an empty home of the test's own (so no one's real token is read)."""
    home.mkdir(parents=True, exist_ok=True)
    environment = {key: value for key, value in child_environment().items() if key not in TOKEN_VARIABLES}
    made = subprocess.run([str(RAY_CLI), "get-auth-token", "--generate"], env={**environment, "HOME": str(home)},
                          capture_output=True, text=True, timeout=120, check=True)
    assert (home / ".ray" / "auth_token").read_text() == made.stdout
    return made.stdout


def session_pids(leader: int) -> list[int]:
    """Every live process in the session that `leader` (a process this test started with a new session) leads."""
    import psutil

    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == leader:
                found.append(process.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return found


def kill_session(leader: int) -> None:
    """SIGKILL the session a test's `ray start --block` (or driver) leads: the node's raylet, agents and workers.

    Ray's workers run in process groups of their own but stay in the node's session, so the session, not the
    group, is what holds all of a node. Repeated until none is left, as a dying raylet may still fork.
    """
    for _ in range(20):
        pids = session_pids(leader)
        if not pids:
            return
        kill_pids(pids)
        time.sleep(0.2)


class RayNodes:
    """`ray start --block` processes on loopback, each leading a session of its own, so each is killed by its id."""

    def __init__(self, temp_dir: Path, environment: dict[str, str]) -> None:
        self.temp_dir, self.environment = temp_dir, environment
        self.nodes: list[tuple[subprocess.Popen, Path]] = []
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"

    def start(self, *flags: str) -> subprocess.Popen:
        log = self.temp_dir / f"node-{len(self.nodes)}.log"
        with open(log, "wb") as output:
            node = subprocess.Popen(
                [str(RAY_CLI), "start", "--block", f"--node-ip-address={LOOPBACK}", "--num-cpus=1",
                 f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={self.temp_dir}", *flags],
                env=self.environment, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        self.nodes.append((node, log))
        deadline = time.monotonic() + NODE_READY_S
        while b"Ray runtime started" not in log.read_bytes():
            assert node.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        return node

    def start_head(self) -> subprocess.Popen:
        return self.start("--head", f"--port={self.port}", f"--ray-client-server-port={free_port()}",
                          f"--dashboard-port={free_port()}", "--include-dashboard=false")

    def start_worker(self) -> subprocess.Popen:
        return self.start(f"--address={self.address}")

    def close(self) -> None:
        for node, _ in reversed(self.nodes):
            kill_session(node.pid)
            node.wait(timeout=30)


def ray_temp_dir() -> Path:
    # Short: Ray puts Unix sockets under it, whose paths may not exceed 107 bytes (pytest's tmp_path can).
    import tempfile

    return Path(tempfile.mkdtemp(prefix="mkray-"))


def node_environment(token: str) -> dict[str, str]:
    """What the README has every machine export before `ray start`, here for processes on this one."""
    return {**child_environment(), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}


@pytest.fixture(scope="module")
def token_head(tmp_path_factory):
    """A one-node cluster started with `ray start --head` and a token from `ray get-auth-token --generate`."""
    token = generate_token(tmp_path_factory.mktemp("head-home"))
    temp_dir = ray_temp_dir()
    nodes = RayNodes(temp_dir, node_environment(token))
    try:
        nodes.start_head()
        yield nodes.address, token
    finally:
        nodes.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def no_token(tmp_path, monkeypatch):
    """This process with no Ray token anywhere: none in the environment, an empty home directory."""
    for name in TOKEN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))


def sweep_at(address: str, tmp_path: Path) -> list[str]:
    return ["sweep", str(write(tmp_path / "space.toml", SPACE)), "--out", str(tmp_path / "sweep"),
            "--address", address]


def test_sweep_at_an_address_where_nothing_listens_is_one_line_and_exit_2(tmp_path, no_token, capsys):
    address = f"{LOOPBACK}:{free_port()}"
    code = cli.main(sweep_at(address, tmp_path))
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1, error
    assert f"nothing listens at {address}" in error and "ray start --head" in error
    assert not (tmp_path / "sweep").exists()


def test_sweep_without_the_clusters_token_is_one_line_and_exit_2(token_head, tmp_path, no_token, capsys):
    address, _ = token_head
    code = cli.main(sweep_at(address, tmp_path))
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1, error
    assert f"the Ray cluster at {address} asks for a token and this machine has none" in error
    assert "RAY_AUTH_TOKEN" in error and "ray get-auth-token" in error
    assert not (tmp_path / "sweep").exists()


def test_sweep_with_another_token_is_one_line_naming_its_source_not_its_text(token_head, tmp_path, no_token,
                                                                            monkeypatch, capsys):
    address, token = token_head
    other = token[::-1]
    monkeypatch.setenv("RAY_AUTH_TOKEN", other)
    code = cli.main(sweep_at(address, tmp_path))
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1, error
    assert f"the Ray cluster at {address} refused the token from RAY_AUTH_TOKEN" in error
    assert other not in error and token not in error
    token_file = tmp_path / "other-token"
    token_file.write_text(other)
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert cli.main(sweep_at(address, tmp_path)) == 2
    assert f"refused the token from {token_file}" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


def test_sweep_with_ray_auth_mode_disabled_against_a_token_cluster_says_so(token_head, tmp_path, no_token,
                                                                          monkeypatch, capsys):
    address, token = token_head
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert cli.main(sweep_at(address, tmp_path)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "RAY_AUTH_MODE=disabled here" in error and token not in error


@pytest.mark.parametrize("address", ["6379", "head:", "head:port", "head:70000"])
def test_sweep_address_that_is_not_host_port_is_one_line_and_exit_2(address, tmp_path, no_token, capsys):
    assert cli.main(sweep_at(address, tmp_path)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "is not HOST:PORT" in error


def test_the_token_is_looked_up_where_ray_looks_and_never_shown(tmp_path, no_token, monkeypatch):
    from mnist_keras.errors import ClusterError
    from mnist_keras.sweeps.cluster import find_token

    assert find_token() is None
    home_file = tmp_path / "empty-home" / ".ray" / "auth_token"
    home_file.parent.mkdir(parents=True)
    home_file.write_text("from-home\n")
    assert (find_token().value, find_token().source) == ("from-home", str(home_file))
    path_file = tmp_path / "token"
    path_file.write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path_file))
    assert (find_token().value, find_token().source) == ("from-path", str(path_file))
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-variable")
    assert (find_token().value, find_token().source) == ("from-variable", "RAY_AUTH_TOKEN")
    assert "from-variable" not in repr(find_token())
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(ClusterError, match="cannot be read"):  # Ray refuses to fall back here, so do we
        find_token()


JOIN_AND_COUNT_NODES = """
import sys
from mnist_keras.sweeps.tune import import_ray, start_ray
ray = import_ray(sys.argv[1])
start_ray(ray, sys.argv[1])
print(len([node for node in ray.nodes() if node["Alive"]]))
ray.shutdown()
"""


@pytest.mark.parametrize("where", ["RAY_AUTH_TOKEN", "~/.ray/auth_token"])
def test_the_driver_joins_with_the_clusters_token_from_either_place_without_ray_auth_mode(token_head, tmp_path,
                                                                                          where):
    """RAY_AUTH_MODE unset on the driver: Ray would not send the token to an explicit address; the sweep does."""
    address, token = token_head
    home = tmp_path / "home"
    environment = {key: value for key, value in child_environment().items() if key not in TOKEN_VARIABLES}
    environment["HOME"] = str(home)
    if where == "RAY_AUTH_TOKEN":
        environment["RAY_AUTH_TOKEN"] = token
    else:
        (home / ".ray").mkdir(parents=True)
        (home / ".ray" / "auth_token").write_text(token)
    joined = subprocess.run([sys.executable, "-c", JOIN_AND_COUNT_NODES, address], env=environment,
                            capture_output=True, text=True, timeout=300)
    assert joined.returncode == 0, joined.stderr[-3000:]
    assert joined.stdout.strip() == "1"
    assert token not in joined.stdout + joined.stderr


def worker_node_trial(out: Path, worker_pids: set[int]) -> str | None:
    """The Tune trial directory whose trial reported an epoch from a process on the worker node, if any yet."""
    for result_file in (out / "tune").glob("*/result.json"):
        for line in result_file.read_text().splitlines():
            try:
                report = json.loads(line)
            except json.JSONDecodeError:  # a line being written
                continue
            if report.get("epoch") and report.get("pid") in worker_pids:
                return result_file.parent.name
    return None


@pytest.mark.slow
@pytest.mark.real_data
def test_a_cluster_started_with_ray_start_and_one_token_loses_a_node_and_loses_no_trial(tmp_path, real_mnist):
    epochs = 8
    token = generate_token(tmp_path / "token-home")
    temp_dir = ray_temp_dir()
    nodes = RayNodes(temp_dir, node_environment(token))
    space, out = write(tmp_path / "space.toml", SPACE.replace("epochs = 2", f"epochs = {epochs}")), tmp_path / "sweep"
    driver = None
    try:
        nodes.start_head()
        worker = nodes.start_worker()
        driver = subprocess.Popen(
            [sys.executable, "-m", "mnist_keras.cli", "sweep", str(space), "--out", str(out), "--limit", str(LIMIT),
             "--no-onnx", "--max-concurrent", "2", "--address", nodes.address],
            env=node_environment(token), start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        deadline, lost = time.monotonic() + 400, None
        while lost is None and driver.poll() is None and time.monotonic() < deadline:
            lost = worker_node_trial(out, set(session_pids(worker.pid)))
            time.sleep(0.1)
        assert lost, "no trial reported an epoch from the worker node"
        kill_session(worker.pid)  # the worker node dies: its raylet, its agents, the trial running there
        output, _ = driver.communicate(timeout=600)
    finally:
        if driver is not None and driver.poll() is None:
            kill_session(driver.pid)
        nodes.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert driver.returncode == 0, output[-3000:]
    rows = read_trials(out)
    assert [row["status"] for row in rows] == ["completed", "completed"]  # nothing lost
    assert [int(row["epochs_trained"]) for row in rows] == [epochs, epochs]
    assert any(f"trial {row['trial_id']} lost its worker; retrying from its checkpoint" in output for row in rows)
    lost_id = next(row["trial_id"] for row in rows if row["trial_id"] in lost)
    reports = [json.loads(line) for line in (out / "tune" / lost / "result.json").read_text().splitlines()
               if line.strip()]
    reported = [report["epoch"] for report in reports if report.get("epoch") is not None]
    assert reported == sorted(set(reported)) and reported[-1] == epochs, reported  # no epoch ran twice
    assert len((out / "trials" / lost_id / "history.csv").read_text().splitlines()) == 1 + epochs
    # The token is in no file the sweep wrote (config.json, sweep.json, Tune's state) and in nothing it printed.
    assert token not in output
    written = [path for path in out.rglob("*") if path.is_file() and token.encode() in path.read_bytes()]
    assert written == []
