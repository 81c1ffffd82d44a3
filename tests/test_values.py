"""What a metrics row may hold: each value refused says, in one sentence, which one and what would do instead."""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import ganterm
from ganterm.errors import UserError
from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.recorder import Recorder
from ganterm.run.values import NAME_LIMIT

LOG = "log a number (int, float, bool, a numpy scalar, a one-element tensor or array) or None"
REDUCE = "reduce it to one real number first (.mean(), say)"
PLAIN = "read it into a plain tensor first"


def _refusal(tmp_path: Path, step: object = 1, **values: object) -> str:
    """What `log` says when it refuses; the run goes on."""
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    with ganterm.Run("refused", root=root, capture_output=False) as run, pytest.raises(UserError) as refused:
        run.log(step, **values)
    return str(refused.value)


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ("x", f"str 'x'; {LOG}"),
        ("x" * 200, f"str 'xxxxxxxxxxxxxxxxxxxxxxxx [... 152 characters cut ...] xxxxxxxxxxxxxxxxxxxxxxxx'; {LOG}"),
        (np.array(["x"]), f"str 'x'; {LOG}"),
        (np.timedelta64(5, "s"), f"timedelta64 np.timedelta64(5,'s'); {LOG}"),
        (Fraction(10**400), f"Fraction Fraction(1000000000000000 [... 364 characters cut ...] {'0' * 21}, 1); {LOG}"),
        (torch.zeros(3), f"a tensor of 3 elements; {REDUCE}"),
        (torch.tensor(1 + 2j), f"a complex tensor; {REDUCE}"),
        (torch.tensor(1.0, device="meta"), f"a meta tensor; {PLAIN}"),
        (torch.quantize_per_tensor(torch.tensor([1.0]), 0.1, 0, torch.quint8), f"a quantized tensor; {PLAIN}"),
        (torch.tensor([1.0]).to_sparse(), f"a sparse tensor; {PLAIN}"),
    ],
)
def test_a_refused_value_is_named_quoted_short_and_told_what_to_log_instead(tmp_path: Path, bad: object, said: str):
    assert _refusal(tmp_path, note=bad) == f"metric 'note' is not a number but {said}"


@pytest.mark.parametrize(
    ("step", "said"),
    [
        (torch.zeros(3), f"metric 'step' is not a number but a tensor of 3 elements; {REDUCE}"),
        (-1, "the step must be a whole number from 0 to 2**63 - 1, not -1"),
        (2**63, "the step must be a whole number from 0 to 2**63 - 1, not 9223372036854775808"),
    ],
)
def test_a_step_refused_says_what_steps_are(tmp_path: Path, step: object, said: str):
    assert _refusal(tmp_path, step, loss_d=0.5) == said


def test_the_first_and_last_step_a_row_may_have_are_kept(tmp_path: Path):
    with ganterm.Run("edges", root=tmp_path, flush_every=1, capture_output=False) as run:
        run.log(0, loss_d=0.5)
        run.log(2**63 - 1, loss_d=0.5)
    assert [row["step"] for row in read_jsonl(run.dir.metrics)] == [0, 2**63 - 1]


def test_names_of_1_to_the_limit_are_taken_and_others_refused_whole(tmp_path: Path):
    longest = "n" * NAME_LIMIT
    with ganterm.Run("named", root=tmp_path, flush_every=1, capture_output=False) as run:
        run.log(1, **{longest: 0.5})
    assert read_jsonl(run.dir.metrics)[0][longest] == 0.5
    assert _refusal(tmp_path, **{"": 0.5}) == "metric name '' is not a name of 1 to 128 characters"
    quoted = "'" + "n" * 24 + " [... 81 characters cut ...] " + "n" * 24 + "'"
    assert _refusal(tmp_path, **{"n" * 129: 0.5}) == f"metric name {quoted} is not a name of 1 to 128 characters"
    assert _refusal(tmp_path, **{"config.lr": 0.5}) == (
        "metric name 'config.lr' is reserved: names starting 'config.' are the exported tables' columns of the "
        "run's config=; log it under another name"
    )
    assert _refusal(tmp_path, t=0.5) == (
        "metric name 't' is reserved: step, t, run are the row's step and time and the exported tables' run column; "
        "log it under another name"
    )


def test_whole_numbers_that_64_bits_hold_stay_whole_in_metrics_jsonl_and_larger_ones_are_floats(tmp_path: Path):
    with ganterm.Run("wide", root=tmp_path, flush_every=1, capture_output=False) as run:
        run.log(1, low=-(2**63), high=2**63 - 1, past=2**63, below=-(2**63) - 1, small=np.int8(3))
    (line,) = run.dir.metrics.read_text(encoding="utf-8").splitlines()
    assert f'"low":{-(2**63)},"high":{2**63 - 1},"past":9.223372e+18,"below":-9.223372e+18' in line
    assert line.endswith('"small":3}')


def _recorded(folder: Path, rows: list[dict[str, object]]) -> tuple[list[str], list[dict[str, object]]]:
    """What the Recorder said writing `rows`, and the rows it wrote."""
    said: list[str] = []
    folder.mkdir()
    recorder = Recorder(RunDir(folder), log=said.append, state="running")
    try:
        recorder.write_rows(rows)
    finally:
        recorder.close()
    return said, read_jsonl(RunDir(folder).metrics)


def test_a_row_handed_to_the_recorder_without_a_usable_time_is_left_out_and_said_once(tmp_path: Path):
    """ganterm's own worker and a loop's flush write through the Recorder: a row without a usable time is dropped."""
    good = {"step": 4, "t": 5.0, "loss_d": torch.tensor(0.25), "a": np.array([2])}
    said, rows = _recorded(tmp_path / "text", [{"step": 1, "t": "x"}, {"step": 2}, good])
    assert said == [f"warning: left out a row: metric 't' is not a number but str 'x'; {LOG}"]
    assert rows == [{"step": 4, "t": 5.0, "loss_d": 0.25, "a": 2}]
    said, rows = _recorded(tmp_path / "endless", [{"step": 1, "t": float("inf")}, {"step": 2}, good])
    assert said == ["warning: left out a row: the row's time t must be a finite number of unix seconds, not inf"]
    assert [row["step"] for row in rows] == [4]
