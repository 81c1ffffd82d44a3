"""The detached launcher of a distributed run: torchrun, in-process, and the verdict when a rank fails.

`ganterm train --nproc-per-node N` starts this module in its own session
(as it starts the worker of a one-process run), and it hands the work to
PyTorch's own launcher, `torch.distributed.run`, which starts one worker per
rank, watches them, and ends the whole group when one dies. What torchrun
cannot do is tell the run directory: when it reports a failed rank, this
module records the run as failed, naming the rank and its reason (the rank's
own last word in this session's part of the log when it left one, else how it
ended: a resumed run's log holds its earlier workers' last words too).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from pathlib import Path

import torch
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import get_args_parser
from torch.distributed.run import run as torchrun

from ganterm.logline import LOG_TIMESTAMP, log
from ganterm.run.jsonl import TextTail, record_event
from ganterm.run.layout import RunDir
from ganterm.run.status import read_status, write_status

DEFAULT_RENDEZVOUS_TIMEOUT = 300  # seconds for every node to join before the run fails


def torchrun_arguments(args: argparse.Namespace) -> list[str]:
    """torchrun's own options, then the worker it runs on every rank."""
    launcher = ["--nproc-per-node", args.nproc_per_node, "--max-restarts", "0"]
    if args.nnodes == 1:
        launcher += ["--standalone"]
    else:  # static: ranks follow --node-rank, so node 0 holds rank 0 and the record (c10d ranks by join order)
        launcher += [
            f"--nnodes={args.nnodes}",
            f"--node-rank={args.node_rank}",
            "--rdzv-backend=static",
            f"--rdzv-endpoint={args.rdzv_endpoint}",  # node 0 listens there; the others connect
            f"--rdzv-id={args.rdzv_id}",
            f"--rdzv-conf=timeout={args.rdzv_timeout}",
        ]
    worker = ["-m", "ganterm.training.worker", str(args.run), "--config", str(args.config)]
    if args.resume is not None:
        worker += ["--resume", str(args.resume)]
    if args.or_older:
        worker += ["--or-older"]
    return [*launcher, *worker]


def describe_failure(error: ChildFailedError, session_log: TextTail) -> str:
    """One sentence: which rank ended the run, and why; `session_log` reads on from where this session began."""
    rank, failure = error.get_first_failure()
    code = failure.exitcode
    killed = code is not None and code < 0
    how = f"was killed by {signal.Signals(-code).name}" if killed else f"exited with code {code}"
    said = _last_word(session_log.read(), rank)
    if said and code == 2:  # a user's mistake, the same sentence on every rank
        return said
    return f"rank {rank} {how}" + (f": {said}" if said else " (see worker.log)")


def _last_word(lines: list[str], rank: int) -> str | None:
    """The message of the rank's own `failed:` line among `lines`, if it wrote one."""
    prefix = "" if rank == 0 else f"rank {rank}: "
    pattern = re.compile(rf"^{LOG_TIMESTAMP.pattern}{re.escape(prefix)}failed: (.*)$")
    return next((m.group(1) for line in reversed(lines) if (m := pattern.match(line))), None)


def record_failure(run: RunDir, message: str) -> None:
    """Rank 0 is gone, so its recorder cannot say it: write the end of the run ourselves."""
    status = read_status(run) or {}
    status.pop("problem", None)
    status |= {"state": "failed", "error": message, "exit_code": 1, "heartbeat": time.time()}
    write_status(run, status)
    record_event(run, "status", int(status.get("step", 0)), state="failed", error=message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ganterm.training.supervisor", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True, help="this node's worker log, for the ranks' last words")
    parser.add_argument("--resume", type=Path, default=None)
    parser.add_argument("--or-older", action="store_true", help="passed on to the workers")
    parser.add_argument("--nproc-per-node", required=True, help="a number, or gpu for one per visible GPU")
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--node-rank", type=int, default=0)
    parser.add_argument("--rdzv-endpoint", default="")
    parser.add_argument("--rdzv-id", default="")
    parser.add_argument("--rdzv-timeout", type=int, default=DEFAULT_RENDEZVOUS_TIMEOUT)
    args = parser.parse_args(argv)
    run = RunDir(args.run)
    if args.nproc_per_node == "gpu" and not torch.cuda.is_available():
        return _failed(run, args, "--nproc-per-node auto starts one process per GPU, and torch sees none here; "
                       "give a number of processes instead")  # fmt: skip
    processes = torch.cuda.device_count() if args.nproc_per_node == "gpu" else int(args.nproc_per_node)
    launch_args = get_args_parser().parse_args(torchrun_arguments(args))
    session_log = TextTail(args.log, from_end=True)  # before the ranks start: what is there is earlier workers'
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    try:
        torchrun(launch_args)
    except ChildFailedError as error:
        return _failed(run, args, describe_failure(error, session_log))
    except Exception as error:  # rendezvous that never completes, a port in use, ...
        reason = f"{type(error).__name__}: {error}"
        return _failed(run, args, f"the group of {args.nnodes} node(s) could not start: {reason}")
    _say(args, "all ranks ended")
    return 0


def _failed(run: RunDir, args: argparse.Namespace, message: str) -> int:
    _say(args, f"failed: {message}")
    if args.node_rank == 0:
        record_failure(run, message)
    return 1


def _say(args: argparse.Namespace, message: str) -> None:
    log(message, speaker=f"node {args.node_rank}")


if __name__ == "__main__":
    sys.exit(main())
