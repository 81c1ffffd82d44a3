"""A loop's config= as config.json keeps it, and as `ganterm runs`, the dashboard and open_run show it."""

from __future__ import annotations

import argparse
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import ganterm
from ganterm.cli import app
from ganterm.errors import UserError
from ganterm.listing import run_summary
from ganterm.run.layout import RunDir
from ganterm.run.settings import differing, shown_config, shown_settings


def _kept(tmp_path: Path, config: Any) -> dict[str, Any]:
    """config.json of a run started with `config`, as a user reading the file finds it."""
    with ganterm.Run("kept", root=tmp_path, config=config, capture_output=False) as run:
        run.log(1, loss_d=0.5)
    return json.loads(run.dir.loop_config.read_text(encoding="utf-8"))


def test_numpy_numbers_and_arrays_are_kept_as_their_values_not_their_repr(tmp_path: Path):
    config = {"steps": np.int64(5), "lr": np.float32(0.5), "scale": Fraction(1, 4), "sizes": np.array([64, 128])}
    assert _kept(tmp_path, config) == {"steps": 5, "lr": 0.5, "scale": 0.25, "sizes": [64, 128]}


def test_whole_numbers_are_kept_up_to_what_64_bits_hold_and_past_that_by_their_repr(tmp_path: Path):
    config = {"low": -(2**63), "high": 2**64 - 1, "below": -(2**63) - 1, "above": 2**64}
    kept = {"low": -(2**63), "high": 2**64 - 1, "below": str(-(2**63) - 1), "above": str(2**64)}
    assert _kept(tmp_path, config) == kept


def test_an_argparse_namespace_is_kept_as_its_arguments(tmp_path: Path):
    assert _kept(tmp_path, argparse.Namespace(lr=0.1, name="adam")) == {"lr": 0.1, "name": "adam"}


def test_config_json_is_indented_for_a_person_reading_it(tmp_path: Path):
    with ganterm.Run("kept", root=tmp_path, config={"lr": 0.1}, capture_output=False) as run:
        run.log(1, loss_d=0.5)
    assert run.dir.loop_config.read_text(encoding="utf-8") == '{\n  "lr": 0.1\n}'


def test_a_config_that_holds_itself_is_refused_in_one_sentence(tmp_path: Path):
    looped: dict[str, Any] = {}
    looped["me"] = looped
    with pytest.raises(UserError) as refused:
        ganterm.Run("looped", root=tmp_path, config=looped)
    assert str(refused.value) == "config holds itself (or is nested thousands deep); give plain settings"


def test_urls_in_a_loops_config_are_shown_as_their_scheme_and_host(tmp_path: Path):
    """A loop's own webhook, password and secret path included, is never shown whole."""
    config = {"hook": "HTTPS://user:pw@hooks.example/T0/S3cret", "mirrors": ["http://a.example/x", "b"]}
    with ganterm.Run("hooked", root=tmp_path, config=config, capture_output=False) as run:
        run.log(1, loss_d=0.5)
    shown = {"hook": "HTTPS://hooks.example/…", "mirrors": ["http://a.example/…", "b"]}
    assert ganterm.open_run(run.dir.path).config() == shown


def test_a_config_json_that_holds_no_object_reads_as_no_settings(tmp_path: Path):
    with ganterm.Run("listed", root=tmp_path, config={"lr": 0.1}, capture_output=False) as run:
        run.log(1, loss_d=0.5)
    run.dir.loop_config.write_text("[1, 2]", encoding="utf-8")  # edited by hand
    assert ganterm.open_run(run.dir.path).config() == {}


def test_ganterm_runs_shows_a_loops_settings_as_written(tmp_path: Path):
    config = {"opt": "adam", "lr": 2e-4, "betas": [0.0, 0.99], "ema": True}
    with ganterm.Run("mine", root=tmp_path, config=config, capture_output=False) as run:
        run.log(1, loss_d=0.5)
    assert run_summary(RunDir(run.dir.path), now=0.0)["config"] == "opt=adam lr=0.0002 betas=[0.0,0.99] ema=true"


def test_ganterm_runs_gives_a_loops_settings_a_column_of_their_own(tmp_path: Path):
    with ganterm.Run("mine", root=tmp_path, config={"opt": "adam", "lr": 2e-4}, capture_output=False) as run:
        run.log(1, loss_d=0.5)
    result = CliRunner().invoke(app, ["runs", "--root", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "config" in result.output and "opt=adam lr=0.0002" in result.output


@pytest.mark.parametrize(
    ("cells", "shown"), [(59, "n=" + "x" * 57), (60, "n=" + "x" * 58), (61, "n=" + "x" * 57 + "…")]
)
def test_ganterm_runs_cuts_a_settings_cell_past_60_cells_with_an_ellipsis(tmp_path: Path, cells: int, shown: str):
    with ganterm.Run("long", root=tmp_path, config={"n": "x"}, capture_output=False) as run:
        run.log(1, loss_d=0.5)
    run.dir.loop_config.write_text(json.dumps({"n": "x" * (cells - 2)}), encoding="utf-8")  # "n=" and the rest
    assert run_summary(RunDir(run.dir.path), now=0.0)["config"] == shown


def test_only_the_settings_that_differ_between_runs_are_called_different():
    """The dashboard's header lists these for compared runs; a setting one run lacks differs from a null one."""
    runs = [{"lr": 0.1, "batch": 64, "seed": None}, {"lr": 0.2, "batch": 64}]
    assert differing(runs) == ["lr", "seed"]


def test_another_tools_settings_are_shown_without_their_secrets():
    """StyleGAN's training_options.json, say: its notify.url left out, other URLs cut to their host."""
    nested = {"notify": {"url": "https://ntfy.sh/topic"}, "G": {"lr": 0.002}, "data": "https://x.example/d.zip"}
    assert shown_config(nested) == {"notify": {}, "G": {"lr": 0.002}, "data": "https://x.example/…"}
    assert shown_settings(nested) == {"notify": {}, "G.lr": 0.002, "data": "https://x.example/…"}
