"""Typed training config: dataclass defaults, then a TOML file, then overrides.

Every value is checked against its field's type and range when it is loaded,
so a mistake is reported in one sentence before any run directory exists.
The dataclass defaults are the default recipe (`configs/dcgan-mnist5k.toml`
says the same thing in a file; a test keeps the two equal).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganterm.errors import ConfigError, UserError
from ganterm.urls import shown_url, url_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

BUILTIN_DATASETS = ("mnist5k", "stacked-mnist", "mnist", "fashion-mnist", "cifar10", "ring", "grid")
TOY_DATASETS = ("ring", "grid")
LOSS_KINDS = ("nonsat", "minimax", "hinge", "lsgan", "wgan-gp", "rpgan")
# D steps per G step that a loss's recipe takes when the config does not say (WGAN-GP's critic trains 5)
N_CRITIC_BY_LOSS = {"wgan-gp": 5}
IMAGE_SIZES = (0, 28, 32, 64)
# Counts (steps, every-N, windows) stop far below 2**63: JSON, numpy and torch all take them whole.
MAX_COUNT = 10**12
MAX_EPOCHS = 1e6
MAX_THREADS = 1024
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _option(default: Any, help: str = "", **checks: Any) -> Any:
    """A config field; `checks` holds choices / ge / gt / le / lt for validation."""
    return field(default=default, metadata={"help": help, **checks})


@dataclass
class DataConfig:
    name: str = _option(
        "mnist5k", "mnist5k, stacked-mnist, mnist, fashion-mnist, cifar10, ring, grid, or a folder of images"
    )
    root: str = _option("", "where downloaded datasets are cached; empty = ~/.cache/ganterm")


@dataclass
class ModelConfig:
    image_size: int = _option(0, "28, 32 or 64 pixels; 0 keeps the dataset's own size", choices=IMAGE_SIZES)
    channels: int = _option(0, "1 or 3; 0 takes the dataset's (filled in when a run starts)", choices=(0, 1, 3))
    width: int = _option(64, "channels of the widest-but-one layer (DCGAN's ngf/ndf)", ge=4, le=1024)
    z_dim: int = _option(100, "latent size", ge=1, le=4096)
    spectral_norm: bool = _option(True, "spectral norm on D's layers (replaces D's BatchNorm)")
    minibatch_std: bool = _option(False, "append a minibatch standard-deviation channel before D's last layer")


@dataclass
class LossConfig:
    kind: str = _option(
        "nonsat", "nonsat, minimax, hinge, lsgan, wgan-gp (n_critic 5 unless set) or rpgan", choices=LOSS_KINDS
    )
    label_smoothing: float = _option(0.1, "one-sided: D's real target becomes 1 - this", ge=0.0, lt=0.5)
    label_noise: float = _option(0.0, "probability of flipping each of D's labels", ge=0.0, lt=0.5)
    gp_weight: float = _option(10.0, "wgan-gp: weight λ of the gradient penalty on interpolates", ge=0.0)
    r1_gamma: float = _option(0.0, "R1: weight γ of the zero-centred gradient penalty on real images; 0 = off", ge=0.0)
    r2_gamma: float = _option(0.0, "R2: weight γ of the zero-centred gradient penalty on fakes; 0 = off", ge=0.0)
    penalty_every: int = _option(
        16, "R1 and R2 every this many D steps, scaled up as much (lazy regularization); 1 = every step", ge=1, le=1000
    )


@dataclass
class TrainConfig:
    steps: int = _option(3500, "total G steps (a resumed run trains on to this step)", ge=1, le=MAX_COUNT)
    epochs: float = _option(0.0, "if above 0, sets steps from the dataset size instead", ge=0.0, le=MAX_EPOCHS)
    batch_size: int = _option(64, "images per batch", ge=1, le=65536)
    lr_g: float = _option(2e-4, "Adam learning rate of G", gt=0.0, le=1.0)
    lr_d: float = _option(2e-4, "Adam learning rate of D", gt=0.0, le=1.0)
    lr_decay: float = _option(
        0.0, "share of the run, at its end, over which both learning rates fall linearly towards 0; 0 = constant",
        ge=0.0, le=1.0)  # fmt: skip
    beta1: float = _option(0.0, "Adam beta1 (0 with spectral norm, as SN-GAN; DCGAN used 0.5)", ge=0.0, lt=1.0)
    beta2: float = _option(0.99, "Adam beta2", ge=0.0, lt=1.0)
    augment: bool = _option(False, "DiffAugment (translation + cutout) on every image D sees; helps small datasets")
    n_critic: int = _option(1, "D steps per G step", ge=1, le=100)
    ema: float = _option(0.999, "decay of the EMA copy of G used for samples; 0 turns it off", ge=0.0, lt=1.0)
    seed: int = _option(0, "seeds weights, noise and data order", ge=0, le=2**63 - 1)
    device: str = _option("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    compile: bool = _option(False, "torch.compile G and D (CUDA only; slower start)")
    threads: int | str = _option(
        "auto", "CPU threads: auto (from the model's size and the idle cores; 1 for a toy) or a whole number >= 1",
        auto_or_count=True,
    )  # fmt: skip
    sync_batchnorm: bool = _option(False, "BatchNorm statistics over the global batch (several CUDA processes)")
    max_bad_steps: int = _option(50, "consecutive non-finite steps before the run is stopped", ge=1, le=MAX_COUNT)


@dataclass
class LogConfig:
    every: int = _option(10, "steps between metric flushes (every step is logged)", ge=1, le=MAX_COUNT)


@dataclass
class SampleConfig:
    every: int = _option(200, "steps between sample grids; 0 = only at the end", ge=0, le=MAX_COUNT)
    count: int = _option(64, "images in each grid", ge=1, le=1024)


@dataclass
class CheckpointConfig:
    every: int = _option(500, "steps between checkpoints; 0 = only at the end", ge=0, le=MAX_COUNT)
    keep: int = _option(3, "how many step checkpoints to keep (latest is always kept)", ge=1, le=MAX_COUNT)


@dataclass
class QualityConfig:
    every: int = _option(
        250, "steps between quality measurements (offline FID, coverage, ...); 0 = off", ge=0, le=MAX_COUNT
    )
    samples: int = _option(1000, "generated images per measurement (toys always use 2,500 points)", ge=100, le=50000)


@dataclass
class HealthConfig:
    enabled: bool = _option(True, "compute alerts from the metric stream")
    window: int = _option(100, "steps in each check's sliding window", ge=10, le=MAX_COUNT)
    warmup: int = _option(200, "steps before any check but NaN may fire", ge=0, le=MAX_COUNT)
    cooldown: int = _option(500, "steps before the same check may fire again", ge=0, le=MAX_COUNT)
    d_x_high: float = _option(
        0.95, "D overpowering: D(x)'s window median above this and D(G(z))'s below d_g_z_low, or both on half "
        "the window's steps", gt=0.5, lt=1.0)  # fmt: skip
    d_g_z_low: float = _option(0.05, "... see d_x_high", gt=0.0, lt=0.5)
    loss_d_low: float = _option(
        0.1, "D overpowering also when D(G(z))'s median is below d_g_z_low and loss_d's below this", gt=0.0
    )
    d_g_z_high: float = _option(0.8, "D collapse: D(G(z))'s window median above this ...", gt=0.5, lt=1.0)
    loss_d_high: float = _option(1.5, "... and loss_d's above this", gt=0.0)
    grad_collapse: float = _option(
        0.05, "vanishing G gradient: grad_norm_g median below this share of its peak", gt=0.0, lt=1.0
    )
    diversity_low: float = _option(
        0.4, "mode collapse: samples' spread below this share of real data's", gt=0.0, lt=1.0
    )
    divergence_growth: float = _option(1.0, "divergence: loss_g rising by more than this share of its level", gt=0.0)
    oscillation_swing: float = _option(1.0, "oscillation: smoothed loss_d swinging by more than this share", gt=0.0)


@dataclass
class NotifyConfig:
    url: str = _option(
        "", "POST each alert and the run's end here as JSON (Slack-compatible webhook, ntfy topic); empty = off"
    )


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_toml(self) -> str:
        """Render as TOML; every value is a scalar, so a small writer suffices."""
        blocks = []
        for section, values in self.to_dict().items():
            lines = [f"[{section}]"] + [f"{key} = {_toml_scalar(v)}" for key, v in values.items()]
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks) + "\n"

    @property
    def is_toy(self) -> bool:
        return self.data.name in TOY_DATASETS


def without_secrets(config: Config) -> Config:
    """`config` for a file made to travel (a checkpoint, an exported generator): no notify.url, a webhook's URL
    being its secret. The run's config.toml keeps it, and a resume reads it there."""
    return dataclasses.replace(config, notify=NotifyConfig())


def _toml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _sections() -> dict[str, dict[str, dataclasses.Field]]:
    return {
        f.name: {sub.name: sub for sub in dataclasses.fields(f.default_factory)}  # type: ignore[arg-type]
        for f in dataclasses.fields(Config)
    }


def all_keys() -> list[str]:
    return [f"{section}.{key}" for section, keys in _sections().items() for key in keys]


def _unknown(what: str, name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else f"; known: {', '.join(known)}"
    return ConfigError(f"unknown config {what} {name!r}{hint}")


def _field_for(dotted: str) -> tuple[str, str, dataclasses.Field]:
    sections = _sections()
    section, _, key = dotted.partition(".")
    if not key:
        raise ConfigError(f"config key {dotted!r} needs a section, as in 'train.steps'")
    if section not in sections:
        raise _unknown("section", section, list(sections))
    if key not in sections[section]:
        raise _unknown("key", dotted, all_keys())
    return section, key, sections[section][key]


def _coerce(dotted: str, spec: dataclasses.Field, value: Any, from_text: bool) -> Any:
    """Check one value against its field; text from the command line is parsed first."""
    if spec.metadata.get("auto_or_count"):
        return _auto_or_count(dotted, value)
    kind = type(spec.default)
    if from_text:
        value = _parse_text(dotted, kind, value)
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{dotted} must be true or false, not {value!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{dotted} must be a whole number, not {value!r}")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{dotted} must be a number, not {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{dotted} must be a finite number, not {value!r}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{dotted} must be text, not {value!r}")
    _check_range(dotted, spec.metadata, value)
    return value


def _auto_or_count(dotted: str, value: Any) -> int | str:
    """ "auto", or a whole number >= 1, from TOML (a number or text) or from --set (text)."""
    text = "" if isinstance(value, bool) else str(value).strip()
    if text == "auto":
        return text
    if isinstance(value, (int, str)) and text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_THREADS:
        return int(text)
    raise ConfigError(f"{dotted} must be auto or a whole number from 1 to {MAX_THREADS}, not {value!r}")


def _parse_text(dotted: str, kind: type, text: str) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{dotted} must be true or false, not {text!r}")
    if kind is int:
        try:
            number = float(text.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{dotted} must be a whole number, not {text!r}") from None
        if not number.is_integer():
            raise ConfigError(f"{dotted} must be a whole number, not {text!r}")
        return int(number)
    if kind is float:
        try:
            return float(text.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{dotted} must be a number, not {text!r}") from None
    return text


def _check_range(dotted: str, checks: Any, value: Any) -> None:
    choices = checks.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{dotted} must be one of {', '.join(map(str, choices))}, not {value!r}")
    bounds = [
        ("ge", ">=", lambda a, b: a >= b),
        ("gt", ">", lambda a, b: a > b),
        ("le", "<=", lambda a, b: a <= b),
        ("lt", "<", lambda a, b: a < b),
    ]
    for name, symbol, holds in bounds:
        if name in checks and not holds(value, checks[name]):
            raise ConfigError(f"{dotted} must be {symbol} {checks[name]}, not {value!r}")


def _set(config: Config, dotted: str, value: Any, from_text: bool) -> None:
    section, key, spec = _field_for(dotted)
    setattr(getattr(config, section), key, _coerce(dotted, spec, value, from_text))


def _apply_mapping(config: Config, mapping: dict[str, Any], origin: str) -> None:
    for section, values in mapping.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: {section!r} must be a [section] table, not a value")
        for key, value in values.items():
            _set(config, f"{section}.{key}", value, from_text=False)


def _validate_whole(config: Config) -> None:
    """Checks that involve more than one field, or the file system."""
    device = config.train.device
    if not _DEVICE_PATTERN.match(device):
        raise ConfigError(f"train.device must be auto, cpu, cuda, cuda:N or mps, not {device!r}")
    url = config.notify.url
    if url and (problem := url_problem(url)):
        raise ConfigError(
            f"notify.url {shown_url(url)!r} {problem}; give an http:// or https:// URL, or empty to send nothing"
        )
    name = config.data.name
    if name not in BUILTIN_DATASETS and not Path(name).expanduser().is_dir():
        close = difflib.get_close_matches(name, BUILTIN_DATASETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"data.name {name!r} is neither a built-in dataset ({', '.join(BUILTIN_DATASETS)}) "
            f"nor an existing folder of images{hint}"
        )


def parse_override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects section.key=value, as in train.lr_d=1e-4, not {text!r}")
    return key.strip(), value.strip()


def read_toml(path: Path, what: str, error: type[UserError] = UserError) -> dict[str, Any]:
    """A TOML file of the user's, or one sentence naming it and what is wrong (`what`: "config file", ...)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as cause:
        raise error(f"{what} {str(path)!r} cannot be read: {cause}") from None
    except tomllib.TOMLDecodeError as cause:
        raise error(f"{what} {str(path)!r} is not valid TOML: {cause}") from None


def load_config(
    path: Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    values: dict[str, Any] | None = None,
    base: Config | None = None,
) -> Config:
    """`base` (defaults), then the TOML file, then typed `values` (CLI flags), then `--set` text."""
    config = copy.deepcopy(base) if base is not None else Config()
    said: set[str] = set()  # the keys the file, the values or the overrides set
    if path is not None:
        path = Path(path)
        mapping = read_toml(path, "config file", ConfigError)
        _apply_mapping(config, mapping, str(path))
        said |= {f"{section}.{key}" for section, keys in mapping.items() if isinstance(keys, dict) for key in keys}
    for dotted, value in (values or {}).items():
        _set(config, dotted, value, from_text=False)
        said.add(dotted)
    for text in overrides:
        dotted, value = parse_override(text)
        _set(config, dotted, value, from_text=True)
        said.add(dotted)
    if "train.n_critic" not in said and base is None:
        config.train.n_critic = N_CRITIC_BY_LOSS.get(config.loss.kind, config.train.n_critic)
    _validate_whole(config)
    return config


def config_from_json(text: str, origin: str) -> Config:
    """Rebuild a config stored in a checkpoint or run directory."""
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{origin} holds a config that is not valid JSON: {error}") from None
    config = Config()
    _apply_mapping(config, mapping, origin)
    return config


def frozen_on_resume(before: Config, after: Config) -> None:
    """A resumed run keeps its data and architecture: the checkpoint's weights fix them."""
    for section in ("data", "model"):
        for key, old in dataclasses.asdict(getattr(before, section)).items():
            new = getattr(getattr(after, section), key)
            if new != old and key != "root":  # the cache folder may move; the data may not
                raise ConfigError(
                    f"{section}.{key} cannot change when resuming (the checkpoint was trained with {old!r}, "
                    f"not {new!r}); start a new run instead"
                )


def learning_rate_scale(step: int, total_steps: int, decay_share: float) -> float:
    """The factor on both learning rates for the step after `step`: 1, then a line that ends one step short of 0.

    Computed from the step and the total alone, so a run resumed to the same total takes the rates of the
    run it continues; one resumed to a larger total takes those of a run that long.
    """
    decay_steps = decay_share * total_steps
    if decay_steps <= 0:
        return 1.0
    return min(1.0, max(total_steps - step, 0) / decay_steps)


def resolve_steps(config: Config, dataset_size: int) -> int:
    """`train.epochs` wins over `train.steps` when set, counted in whole batches."""
    if config.train.epochs > 0:
        steps = max(1, math.ceil(config.train.epochs * dataset_size / config.train.batch_size))
        if steps > MAX_COUNT:
            raise ConfigError(
                f"train.epochs = {config.train.epochs:g} makes {steps} steps over {dataset_size} images; "
                f"at most {MAX_COUNT} are allowed, so give fewer epochs"
            )
        return steps
    return config.train.steps
