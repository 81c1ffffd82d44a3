"""Config loading: recipes, overrides, and one clear sentence for each kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ganterm.cli import app
from ganterm.config import Config, config_from_json, learning_rate_scale, load_config
from ganterm.errors import ConfigError

CONFIGS = Path(__file__).parent.parent / "configs"
runner = CliRunner()


def test_default_recipe_file_matches_the_built_in_defaults():
    """`ganterm train` with no config and with configs/dcgan-mnist5k.toml train the same thing."""
    assert load_config(CONFIGS / "dcgan-mnist5k.toml") == Config()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path, tmp_path: Path):
    config = load_config(path, values={"data.name": str(tmp_path)} if "folder" in path.name else None)
    assert config.train.steps > 0


def test_overrides_are_typed_by_the_field():
    config = load_config(None, ["train.lr_d=1e-3", "train.steps=1_000", "model.spectral_norm=yes", "data.name=ring"])
    assert config.train.lr_d == 1e-3
    assert config.train.steps == 1000
    assert config.model.spectral_norm is True
    assert config.is_toy


def test_cli_flags_apply_before_set_overrides():
    config = load_config(None, ["train.steps=7"], {"train.steps": 5, "train.batch_size": 8})
    assert (config.train.steps, config.train.batch_size) == (7, 8)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=1", "unknown config key 'train.lr'; did you mean 'train.lr_g' or 'train.lr_d'?"),
        ("trian.steps=1", "unknown config section 'trian'; did you mean 'train'?"),
        ("train.steps=ten", "train.steps must be a whole number, not 'ten'"),
        ("train.steps=2.5", "train.steps must be a whole number, not '2.5'"),
        ("train.steps=0", "train.steps must be >= 1, not 0"),
        ("train.lr_d=0", "train.lr_d must be > 0.0, not 0.0"),
        ("loss.kind=wasserstein", "loss.kind must be one of nonsat, minimax, hinge, lsgan, wgan-gp, rpgan, not 'wass"),
        ("model.image_size=48", "model.image_size must be one of 0, 28, 32, 64, not 48"),
        ("model.spectral_norm=maybe", "model.spectral_norm must be true or false, not 'maybe'"),
        ("train.device=gpu", "train.device must be auto, cpu, cuda, cuda:N or mps, not 'gpu'"),
        ("train.threads=0", "train.threads must be auto or a whole number from 1 to 1024, not '0'"),
        ("train.threads=two", "train.threads must be auto or a whole number from 1 to 1024, not 'two'"),
        ("train.threads=1.5", "train.threads must be auto or a whole number from 1 to 1024, not '1.5'"),
        ("train.threads=²", "train.threads must be auto or a whole number from 1 to 1024, not '²'"),
        ("data.name=mnsit", "(did you mean 'mnist'?)"),
        ("steps=3", "config key 'steps' needs a section, as in 'train.steps'"),
        ("train.steps", "--set expects section.key=value"),
    ],
)
def test_mistakes_are_named_with_what_is_accepted(override: str, message: str):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    assert message in str(caught.value)


def test_toml_file_mistakes(tmp_path: Path):
    bad_type = tmp_path / "bad.toml"
    bad_type.write_text('[train]\nsteps = "many"\n')
    with pytest.raises(ConfigError, match=r"train\.steps must be a whole number, not 'many'"):
        load_config(bad_type)
    not_toml = tmp_path / "broken.toml"
    not_toml.write_text("[train\nsteps = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(not_toml)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_threads_are_auto_or_a_whole_number_from_a_file_or_the_command_line(tmp_path: Path):
    assert Config().train.threads == "auto"
    assert load_config(None, ["train.threads=3"]).train.threads == 3
    path = tmp_path / "threads.toml"
    for written, read in (("2", 2), ('"auto"', "auto"), ('"4"', 4)):
        path.write_text(f"[train]\nthreads = {written}\n")
        config = load_config(path)
        assert config.train.threads == read and config_from_json(config.to_json(), "test") == config
    path.write_text("[train]\nthreads = -1\n")
    with pytest.raises(ConfigError, match=r"^train\.threads must be auto or a whole number from 1 to 1024, not -1$"):
        load_config(path)


def test_config_survives_json_round_trip():
    config = load_config(None, ["data.name=grid", "train.n_critic=3", "loss.label_smoothing=0.2"])
    assert config_from_json(config.to_json(), "test") == config


def test_resolved_toml_reads_back_identically(tmp_path: Path):
    config = load_config(None, ["train.lr_g=3e-4", "data.name=ring", "train.device=cuda:1"])
    path = tmp_path / "resolved.toml"
    path.write_text(config.to_toml())
    assert load_config(path) == config


def test_cli_config_error_exits_2_and_leaves_no_run_directory(in_tmp: Path):
    result = runner.invoke(app, ["train", "--set", "train.lr=0.1"])
    assert result.exit_code == 2
    assert "did you mean 'train.lr_g' or 'train.lr_d'?" in result.output
    assert "Traceback" not in result.output
    assert not (in_tmp / "runs").exists()


def test_dry_run_prints_the_resolved_config(in_tmp: Path):
    result = runner.invoke(app, ["train", "--dry-run", "--data", "ring", "--steps", "42", "--set", "train.lr_d=1e-3"])
    assert result.exit_code == 0, result.output
    resolved = in_tmp / "resolved.toml"
    resolved.write_text(result.output)
    config = load_config(resolved)
    assert (config.data.name, config.train.steps, config.train.lr_d) == ("ring", 42, 1e-3)
    assert not (in_tmp / "runs").exists()


@pytest.mark.parametrize(
    ("step", "scale"),
    [(0, 1.0), (50, 1.0), (60, 1.0), (70, 0.75), (99, 0.025), (100, 0.0), (120, 0.0)],
)
def test_a_decay_over_the_last_share_keeps_full_rate_before_it_and_ends_one_step_short_of_zero(step: int, scale: float):
    assert learning_rate_scale(step, 100, 0.4) == pytest.approx(scale)


def test_no_decay_keeps_full_rate_to_the_last_step():
    assert [learning_rate_scale(step, 10, 0.0) for step in (0, 9, 10)] == [1.0, 1.0, 1.0]
