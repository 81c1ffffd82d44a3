"""Properties of the run record, over inputs nobody thought to write down (hypothesis picks them).

Rewinding to any step at any moment keeps every step exactly once; the CSV export holds every row's values
as written; a config goes through TOML and JSON and comes back the same, whatever the values.
"""

from __future__ import annotations

import math

import orjson
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from ganterm.config import Config, config_from_json, load_config
from ganterm.export import export_history, open_histories
from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.rewind import rewind
from ganterm.sources import GantermRun

VALUE = st.none() | st.floats(allow_nan=False, allow_infinity=False, width=32) | st.integers(-(2**53), 2**53)


def _row(step: int, values: dict) -> bytes:
    return orjson.dumps({"step": step, "t": 1_700_000_000.0 + step, **values}) + b"\n"


@settings(max_examples=80, deadline=None)
@given(
    total=st.integers(1, 60),
    cuts=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=4),
    torn=st.booleans(),
)
def test_rewinding_at_any_points_keeps_every_step_exactly_once(tmp_path_factory, total, cuts, torn):
    """A worker killed anywhere (a torn line or not), resumed from any earlier checkpoint, any number of times."""
    run = RunDir(tmp_path_factory.mktemp("rewind") / "r")
    run.path.mkdir()
    run.metrics.write_bytes(b"")
    written = 0
    for killed_at, checkpoint_at in cuts:
        upto = written + int(killed_at * (total - written))  # the worker logs on, then dies
        with run.metrics.open("ab") as handle:
            handle.write(b"".join(_row(step, {"loss_d": step / 7}) for step in range(written + 1, upto + 1)))
            if torn:
                handle.write(_row(upto + 1, {"loss_d": 0.0})[:-3])  # killed mid-line
        written = upto
        resume_from = int(checkpoint_at * written)  # its newest checkpoint is at or before its last row
        rewind(run, resume_from)
        written = resume_from
    with run.metrics.open("ab") as handle:  # the last worker runs to the end
        handle.write(b"".join(_row(step, {"loss_d": step / 7}) for step in range(written + 1, total + 1)))
    steps = [row["step"] for row in read_jsonl(run.metrics)]
    assert steps == list(range(1, total + 1))


ROWS = st.lists(
    st.dictionaries(st.sampled_from(["loss_d", "loss_g", "my metric", "fid", "d_x"]), VALUE, max_size=4),
    min_size=1,
    max_size=30,
)


@settings(max_examples=40, deadline=None)
@given(rows=ROWS)
def test_the_csv_export_holds_every_row_as_written(tmp_path_factory, rows):
    """Read back with pandas: one row per metrics row, each value equal to what was logged (null as NaN)."""
    root = tmp_path_factory.mktemp("export")
    run = RunDir(root / "runs" / "r")
    run.path.mkdir(parents=True)
    run.metrics.write_bytes(b"".join(_row(step, values) for step, values in enumerate(rows, start=1)))
    out = root / "out.csv"
    export_history(open_histories([GantermRun(run)]), "csv", out, advance=lambda done: None)
    table = pd.read_csv(out)
    assert table["step"].tolist() == list(range(1, len(rows) + 1))
    for index, values in enumerate(rows):
        for name, value in values.items():
            cell = table[name].iloc[index]
            if value is None:
                assert math.isnan(cell)
            else:
                assert math.isclose(cell, value, rel_tol=1e-6, abs_tol=1e-30), (name, value, cell)


def _switches() -> st.SearchStrategy[dict]:
    """Any subset of the config's on/off keys, each set either way."""
    keys = [f"{section}.{key}" for section, values in Config().to_dict().items()
            for key, default in values.items() if isinstance(default, bool)]  # fmt: skip
    return st.fixed_dictionaries({}, optional=dict.fromkeys(keys, st.booleans()))


@settings(max_examples=60, deadline=None)
@given(
    overrides=_switches(),
    lr=st.floats(1e-6, 1.0),
    steps=st.integers(1, 10**6),
    name=st.sampled_from(["mnist5k", "stacked-mnist", "mnist", "fashion-mnist", "cifar10", "ring", "grid"]),
)
def test_a_config_comes_back_the_same_through_toml_and_json(tmp_path_factory, overrides, lr, steps, name):
    """What a run saves (config.toml, and JSON inside every checkpoint) is what it was given."""
    given_config = load_config(None, [f"{key}={str(value).lower()}" for key, value in overrides.items()])
    given_config.train.lr_d, given_config.train.steps = lr, steps
    given_config.data.name = name
    folder = tmp_path_factory.mktemp("config")
    (folder / "config.toml").write_text(given_config.to_toml(), encoding="utf-8")
    assert load_config(folder / "config.toml").to_dict() == given_config.to_dict()
    assert config_from_json(given_config.to_json(), "test").to_dict() == given_config.to_dict()
