"""Many processes on torchrun / DDP, on the CPU with gloo: one run, every rank in step, kill-safe, resumable."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from ganterm.run.checkpoints import step_files
from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import effective_state, read_status
from tests.conftest import TINY, run_cli, tiny_config, wait_for

pytestmark = pytest.mark.skipif(not dist.is_gloo_available(), reason="this torch has no gloo backend")

SMALL = [f"--set={item}" for item in TINY if not item.startswith(("log.", "checkpoint."))] + ["--set=log.every=2"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _train_rank(rank: int, port: int, out: str, loss: tuple[str, ...] = ()) -> None:
    """One rank of a 2-process group, in-process: train, then report what each rank holds."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    from ganterm.training.data import load_dataset
    from ganterm.training.distributed import Group
    from ganterm.training.trainer import Trainer, complete_config

    config = tiny_config("train.steps=6", "train.batch_size=16", *loss)
    dataset = load_dataset(config, progress=lambda message: None)
    complete_config(config, dataset)
    trainer = Trainer(config, dataset, torch.device("cpu"), Group.from_env("cpu"))
    for _ in range(6):
        trainer.train_step()
    local = torch.stack(trainer._pending).clone()  # this rank's own per-step statistics, before averaging
    rows = trainer.collect_rows()
    parameters = torch.cat([p.detach().flatten() for p in trainer.generator.parameters()])
    parameters = torch.cat([parameters, *(p.detach().flatten() for p in trainer.discriminator.parameters())])
    saved = {"local": local, "rows": rows, "parameters": parameters, "statistics": trainer.statistics}
    torch.save(saved, Path(out) / f"rank{rank}.pt")
    trainer.group.close()


@pytest.mark.parametrize(
    "loss",
    [
        (),
        ("loss.kind=wgan-gp", "train.n_critic=2"),
        # slow: its penalties' double backward goes through DDP as WGAN-GP's does
        pytest.param(
            ("loss.kind=rpgan", "loss.r1_gamma=1", "loss.r2_gamma=1", "loss.penalty_every=1"), marks=pytest.mark.slow
        ),
    ],
    ids=["nonsat", "wgan-gp", "rpgan-r1-r2"],
)
def test_ranks_hold_identical_parameters_and_log_the_mean_of_their_statistics(tmp_path: Path, loss: tuple[str, ...]):
    """The penalties' double backward goes through DDP like any backward: gradients averaged, ranks in step."""
    mp.spawn(_train_rank, args=(free_port(), str(tmp_path), loss), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert torch.equal(ranks[0]["parameters"], ranks[1]["parameters"])
    assert not torch.equal(ranks[0]["local"], ranks[1]["local"])  # each rank saw its own slice and noise
    mean = (ranks[0]["local"] + ranks[1]["local"]) / 2
    statistics = ranks[0]["statistics"]
    assert {"gp": "wgan-gp" in str(loss), "r1": "rpgan" in str(loss)} == {
        name: name in statistics for name in ("gp", "r1")
    }

    for step, row in enumerate(ranks[0]["rows"]):
        for column, name in enumerate(statistics):
            assert row[name] == pytest.approx(float(mean[step, column]), rel=1e-5), (step, name)
    without_time = [[{k: v for k, v in row.items() if k != "t"} for row in rank["rows"]] for rank in ranks]
    assert without_time[0] == without_time[1]


def _worker_rank(rank: int, port: int, root: str) -> None:
    """One rank of the worker's own code, in-process; records its exit code and the threads left once it returned."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK="0")
    from ganterm.training.worker import run_worker

    exit_code = run_worker(RunDir(Path(root) / "runs" / "ended"), None, config_path=Path(root) / "config.toml")
    threads = [(task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir()]
    (Path(root) / f"rank{rank}.json").write_text(json.dumps([exit_code, threads]))


def test_a_rank_ends_its_groups_threads_before_its_interpreter_ends(tmp_path: Path):
    """A gloo thread left to the interpreter's exit can abort a rank that had finished (SIGABRT) and fail the run.

    The spawned ranks import this module first: a top-level import here of what loads torch.distributed.nn
    (torch._dynamo, torchvision) would load it before the group, as the fix does, and blind this test.
    """
    (tmp_path / "config.toml").write_text(tiny_config("train.steps=2").to_toml())
    (tmp_path / "runs" / "ended").mkdir(parents=True)
    mp.spawn(_worker_rank, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        exit_code, threads = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert exit_code == 0 and not [name for name in threads if "gloo" in name], (rank, threads)


def train(tmp_path: Path, name: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return run_cli(tmp_path, "train", "--name", name, "--nproc-per-node", "2", *SMALL, *args, timeout=timeout)


def rank_lines(run: RunDir, pattern: str) -> dict[str, list[int]]:
    """Steps at which each rank logged `pattern` ('paused', 'stopped', ...)."""
    found: dict[str, list[int]] = {}
    for line in run.log.read_text().splitlines():
        match = re.search(rf"(rank \d+: )?step (\d+): {pattern}$", line)
        if match:
            found.setdefault(match.group(1) or "rank 0: ", []).append(int(match.group(2)))
    return found


def test_pause_and_stop_act_on_every_rank_at_the_same_step(tmp_path: Path):
    result = train(tmp_path, "steered", "--steps", "100000", "--detach")
    assert result.returncode == 0, result.stderr
    run = RunDir(tmp_path / "runs" / "steered")
    assert read_status(run)["world_size"] == 2
    for command, state in (("pause", "paused"), ("unpause", "running"), ("stop", "stopped")):
        answer = run_cli(tmp_path, command, "steered", timeout=120)
        assert answer.returncode == 0, answer.stderr
        wait_for(lambda state=state: len(rank_lines(run, state)) == 2, what=f"both ranks {state}")
    paused, stopped = rank_lines(run, "paused"), rank_lines(run, "stopped")
    assert paused["rank 0: "] == paused["rank 1: "] and stopped["rank 0: "] == stopped["rank 1: "]
    step = stopped["rank 0: "][0]
    checkpoints = [e for e in read_jsonl(run.events) if e["kind"] == "checkpoint"]
    assert [e["step"] for e in checkpoints] == [step]
    rows = read_jsonl(run.metrics)
    assert [row["step"] for row in rows] == list(range(1, step + 1))  # every step once, rows before the checkpoint


@pytest.fixture(autouse=True)
def no_workers_left_behind(tmp_path: Path):
    """Whatever a test leaves running (it failed half-way, say) is killed after it."""
    yield
    for pid in worker_pids(tmp_path).values():  # pids only, never -1 (which would mean every process)
        os.kill(pid, signal.SIGKILL)


def worker_pids(under: Path | RunDir) -> dict[int, int]:
    """rank -> pid of the worker and supervisor processes whose working folder is under `under` (supervisor: -1)."""
    folder = str(under.path.parent.parent if isinstance(under, RunDir) else under)
    pids = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not os.readlink(entry / "cwd").startswith(folder):
                continue
            command = (entry / "cmdline").read_bytes().split(b"\0")
            environ = dict(
                item.split(b"=", 1) for item in (entry / "environ").read_bytes().split(b"\0") if b"=" in item
            )
        except OSError:
            continue
        if b"ganterm.training.worker" in command:
            pids[int(environ.get(b"RANK", b"0"))] = int(entry.name)
        elif b"ganterm.training.supervisor" in command:
            pids[-1] = int(entry.name)
    return pids


def test_a_killed_rank_fails_the_run_naming_it_again_after_a_resume_and_the_run_resumes(tmp_path: Path):
    """The reason for a failure comes from this session's lines of worker.log, never from an earlier worker's."""
    result = train(tmp_path, "crash", "--steps", "100000", "--set=checkpoint.every=10", "--detach")
    assert result.returncode == 0, result.stderr
    run = RunDir(tmp_path / "runs" / "crash")
    wait_for(lambda: any(e["kind"] == "checkpoint" for e in read_jsonl(run.events)), what="a checkpoint")
    pids = worker_pids(run)
    assert sorted(pids) == [-1, 0, 1]
    killed_at = time.monotonic()
    os.kill(pids[1], signal.SIGKILL)
    wait_for(lambda: effective_state(read_status(run)) == "failed", timeout=90, what="the run to fail")
    took = time.monotonic() - killed_at
    status = read_status(run)
    assert status["error"].startswith("rank 1 was killed by SIGKILL"), status["error"]
    wait_for(lambda: not worker_pids(run), timeout=30, what="no worker left")
    assert took < 60

    with open(run.log, "a") as log:  # what rank 1 of an earlier session wrote when it failed
        log.write("2026-01-01 00:00:00 rank 1: failed: CUDA out of memory (an earlier session)\n")
    resumed = run_cli(
        tmp_path, "train", "--resume", "crash", "--nproc-per-node", "2", "--steps", "100000", "--detach", timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    wait_for(lambda: sorted(worker_pids(run)) == [-1, 0, 1], what="both ranks of the resumed run")
    os.kill(worker_pids(run)[1], signal.SIGKILL)
    wait_for(lambda: effective_state(read_status(run)) == "failed", timeout=60, what="the resumed run to fail")
    assert read_status(run)["error"] == "rank 1 was killed by SIGKILL (see worker.log)"
    wait_for(lambda: not worker_pids(run), timeout=30, what="no worker left after the resume")

    total = str(step_files(run.checkpoints)[-1][0] + 14)  # a fast machine may have saved several before a kill
    resumed = run_cli(tmp_path, "train", "--resume", "crash", "--nproc-per-node", "2", "--steps", total, timeout=240)
    assert resumed.returncode == 0, resumed.stderr + run.log.read_text()[-2000:]
    assert read_status(run)["state"] == "finished" and read_status(run)["step"] == int(total)


def test_resuming_at_the_same_world_size_is_bit_exact_and_shows_none_of_the_earlier_sessions_lines(tmp_path: Path):
    """Resumed right after its end: the earlier supervisor outlives its ranks by seconds, and the resume waits
    for it, so that supervisor's last line stays behind."""
    assert train(tmp_path, "straight", "--steps", "12", "--no-dashboard").returncode == 0
    assert train(tmp_path, "halves", "--steps", "6", "--no-dashboard").returncode == 0
    second = run_cli(tmp_path, "train", "--resume", "halves", "--nproc-per-node=2", "--steps=12", "--no-dashboard")
    assert second.returncode == 0, second.stderr
    assert "all ranks ended" not in second.stdout, second.stdout
    runs = tmp_path / "runs"
    assert read_status(RunDir(runs / "halves"))["step"] == 12
    straight = load_file(runs / "straight" / "checkpoints" / "step_0000012.safetensors")
    halves = load_file(runs / "halves" / "checkpoints" / "step_0000012.safetensors")
    assert straight.keys() == halves.keys()
    assert all(torch.equal(straight[key], halves[key]) for key in straight)


def test_two_nodes_on_loopback_train_one_run(tmp_path: Path):
    port = free_port()
    common = ["train", "--name", "pair", "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}", *SMALL]
    common += ["--steps", "8", "--no-dashboard"]
    env = {**os.environ, "COLUMNS": "200"}
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "ganterm", *common, "--node-rank", str(rank)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=240) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    run = RunDir(tmp_path / "runs" / "pair")
    status = read_status(run)
    assert status["state"] == "finished" and status["world_size"] == 2
    assert [row["step"] for row in read_jsonl(run.metrics)] == list(range(1, 9))
    assert "node 1: all ranks ended" in (run.path / "nodes" / "1" / "worker.log").read_text()


def test_two_machines_sharing_no_folder_record_the_run_on_node_0_when_node_1_joins_first(tmp_path: Path):
    """--node-rank 0 owns the record whatever the order in which the machines join the group."""
    port = free_port()
    machines = [tmp_path / "machine0", tmp_path / "machine1"]
    command = [sys.executable, "-m", "ganterm", "train", "--name", "pair", "--nnodes", "2", *SMALL]
    command += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--steps", "8", "--no-dashboard"]

    def start(rank: int) -> subprocess.Popen[str]:
        machines[rank].mkdir()
        return subprocess.Popen(
            [*command, "--node-rank", str(rank)],
            cwd=machines[rank],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )

    second = start(1)
    wait_for(lambda: -1 in worker_pids(machines[1]), what="node 1's supervisor")
    time.sleep(4)  # node 1's torchrun is waiting for the group when node 0 comes
    first = start(0)
    try:
        (out0, err0), (out1, err1) = first.communicate(timeout=120), second.communicate(timeout=60)
    finally:
        for node in (first, second):
            node.kill()
    assert (first.returncode, second.returncode) == (0, 0), (out0, err0, out1, err1)
    run = RunDir(machines[0] / "runs" / "pair")
    status = read_status(run)
    assert status["state"] == "finished" and status["world_size"] == 2
    assert [row["step"] for row in read_jsonl(run.metrics)] == list(range(1, 9))
    left_on_node_1 = sorted(str(p.relative_to(machines[1])) for p in machines[1].rglob("*") if p.is_file())
    assert left_on_node_1 == ["runs/pair/nodes/1/config.toml", "runs/pair/nodes/1/worker.log"]
    assert "node 0 records the run" in out1 and "node 1: all ranks ended" in out1, out1


def _user_rank(rank: int, port: int, root: str) -> None:
    """A user's own 2-process job using ganterm.Run: a viewer's stop reaches both ranks at one step."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    dist.init_process_group("gloo")
    import ganterm
    from ganterm.run.jsonl import append_jsonl

    stopped_at = None
    with ganterm.Run("together", root=root, flush_every=5) as run:
        for step in run.steps(10_000):
            run.log(step, loss_d=torch.tensor(float(rank)))
            if rank == 0 and step == 23:
                append_jsonl(run.dir.control, {"cmd": "stop", "id": "viewer"})
            stopped_at = step
    Path(root, f"rank{rank}.txt").write_text(str(stopped_at))
    dist.destroy_process_group()


def test_the_python_api_in_a_users_torchrun_job_writes_from_rank_0_and_stops_every_rank_together(tmp_path: Path):
    mp.spawn(_user_rank, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    steps = [int((tmp_path / f"rank{rank}.txt").read_text()) for rank in (0, 1)]
    assert steps[0] == steps[1] == 23
    run = RunDir(tmp_path / "together")
    assert read_status(run)["state"] == "stopped" and read_status(run)["world_size"] == 2
    rows = read_jsonl(run.metrics)
    assert [row["step"] for row in rows] == list(range(1, 24)) and {row["loss_d"] for row in rows} == {0.0}


def test_sync_batchnorm_on_the_cpu_is_one_sentence():
    """SyncBatchNorm runs on CUDA only: asked for on CPU processes, the run says so before it trains."""
    from ganterm.errors import UserError
    from ganterm.training.data import load_dataset
    from ganterm.training.distributed import Group
    from ganterm.training.trainer import Trainer, complete_config

    config = tiny_config("train.sync_batchnorm=true")
    dataset = load_dataset(config, progress=lambda message: None)
    complete_config(config, dataset)
    with pytest.raises(UserError, match="sync_batchnorm needs CUDA GPUs"):
        Trainer(config, dataset, torch.device("cpu"), Group(rank=0, world_size=2))


def test_a_machine_whose_supervisor_cannot_start_names_its_own_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Node 1 of two writes its log to nodes/1/worker.log: that is the file a failed start points to."""
    from ganterm import detached, launch
    from ganterm.errors import UserError
    from ganterm.scale import Scale

    monkeypatch.setattr(detached, "spawn_detached", lambda command, log: None)
    scale = Scale("1", nnodes=2, node_rank=1, rdzv_endpoint="127.0.0.1:29400", rdzv_id="pair")
    with pytest.raises(UserError, match=r"see \S+/runs/pair/nodes/1/worker\.log$"):
        launch.start_run(launch.Plan(tiny_config()), "pair", tmp_path / "runs", scale)


def test_the_machines_of_a_new_run_need_its_name_and_those_of_a_resumed_run_take_its_own(tmp_path: Path):
    """--rdzv-id names no run (node 1 wrote into runs/None/); --resume RUN does, so --name is not needed there."""
    machine = ["--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", f"127.0.0.1:{free_port()}"]
    new = run_cli(tmp_path, "train", *machine, "--rdzv-id", "pair", timeout=30)
    assert new.returncode == 1 and "needs --name" in new.stderr, new.stdout + new.stderr
    assert not (tmp_path / "runs").exists()
    run = RunDir(tmp_path / "runs" / "pair")
    run.path.mkdir(parents=True)
    run.config.write_text(tiny_config().to_toml(), encoding="utf-8")
    resumed = run_cli(tmp_path, "train", "--resume", "pair", *machine, "--dry-run", timeout=30)
    assert resumed.returncode == 0, resumed.stderr


def test_a_resume_waits_for_a_live_supervisor_but_not_for_a_process_that_took_its_pid_later(tmp_path: Path):
    """The supervisor's pid in status.json counts only for a process that began before the run did."""
    from ganterm.errors import UserError
    from ganterm.run.status import this_host, write_status
    from ganterm.waiting import ensure_idle

    run = RunDir(tmp_path / "runs" / "ended")
    run.path.mkdir(parents=True)
    ended = {"state": "finished", "pid": 1, "host": this_host(), "supervisor": os.getpid()}
    write_status(run, {**ended, "started": time.time()})  # this test's process, alive, began before
    with pytest.raises(UserError, match=r"the supervisor of its processes \(process \d+\) has not"):
        ensure_idle(run, wait_s=0.3, say=lambda line: None)
    write_status(run, {**ended, "started": 0.0})  # the pid was handed out again after the run
    ensure_idle(run, wait_s=0.3, say=lambda line: None)
