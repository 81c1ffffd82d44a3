"""Reading a StyleGAN2-ADA / StyleGAN3-style training folder, live: the format as NVlabs' code writes it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ganterm.sources.follow import LOG_TAIL_BYTES
from ganterm.sources.stylegan import StyleganReader, find_stylegan_runs
from tests.stylegan_folder import STATS, StyleganFolder, fid_value, loss_value, stat, tick_record, write_stylegan_folder


def steps(batch, tag: str) -> list[int]:
    return batch.scalars[tag][0].tolist() if tag in batch.scalars else []


def images(batch) -> list[tuple[str, int, str]]:
    return [(image.tag, image.step, Path(image.image).name) for image in batch.images]


class TestWhatIsRead:
    def test_every_statistic_is_a_series_at_the_kimg_of_its_tick(self, tmp_path: Path):
        """Three ticks of 4 kimg (the first after one batch): steps 0, 4, 8, each statistic's mean as its value."""
        write_stylegan_folder(tmp_path, ticks=3)
        batch = StyleganReader(tmp_path).poll()
        assert sorted(batch.scalars) == sorted([*STATS, "Metrics/fid50k_full"])
        for name in STATS:
            assert steps(batch, name) == [0, 4, 8], name
        assert batch.scalars["Loss/G/loss"][1].tolist() == [loss_value("Loss/G/loss", k) for k in (0, 4, 8)]
        assert batch.scalars["Progress/augment"][1].tolist() == [0.0, 0.01, 0.02]
        assert batch.scalars["Loss/G/loss"][0].dtype == np.int64
        assert batch.bad_records == 0 and not batch.reset

    def test_each_ticks_timestamp_is_the_wall_time_of_its_kimg_once_and_not_its_metrics_later_one(self, tmp_path: Path):
        """The metric lines' timestamps (1.7e9, before any tick's here) tell when an evaluation ended, not the step."""
        folder = write_stylegan_folder(tmp_path, ticks=3, metrics=("fid50k_full",))
        reader = StyleganReader(tmp_path)
        first = reader.poll()
        folder.ticks(2)
        second = reader.poll()
        assert [part.tolist() for part in first.times] == [[0, 4, 8], [1.7e9, 1.7e9 + 1, 1.7e9 + 2]]
        assert [part.tolist() for part in second.times] == [[12, 16], [1.7e9 + 3, 1.7e9 + 4]]
        assert "Metrics/fid50k_full" in first.scalars and not len(reader.poll().times[0])

    def test_a_metric_sits_at_the_kimg_of_its_snapshot(self, tmp_path: Path):
        write_stylegan_folder(tmp_path, ticks=5, metrics=("fid50k_full", "kid50k_full"))
        batch = StyleganReader(tmp_path).poll()
        for name in ("Metrics/fid50k_full", "Metrics/kid50k_full"):
            assert steps(batch, name) == [0, 8, 16]
            assert batch.scalars[name][1].tolist() == [fid_value(k) for k in (0, 8, 16)]

    def test_each_result_of_a_metric_is_its_own_series(self, tmp_path: Path):
        folder = write_stylegan_folder(tmp_path, ticks=1, metrics=())
        results = {"pr50k3_full_precision": 0.7, "pr50k3_full_recall": 0.4}
        folder.report_metric("pr50k3_full", tmp_path / "network-snapshot-000000.pkl", results)
        batch = StyleganReader(tmp_path).poll()
        assert {tag: batch.scalars[tag][1].tolist() for tag in batch.scalars if tag.startswith("Metrics/")} == {
            "Metrics/pr50k3_full_precision": [0.7],
            "Metrics/pr50k3_full_recall": [0.4],
        }

    def test_grids_come_with_their_kimg_reals_and_the_first_fakes_at_step_zero(self, tmp_path: Path):
        write_stylegan_folder(tmp_path, ticks=3)
        (tmp_path / "fakes000004 (copy).png").write_bytes((tmp_path / "fakes000000.png").read_bytes())
        batch = StyleganReader(tmp_path).poll()
        assert images(batch) == [
            ("fakes", 0, "fakes000000.png"),
            ("fakes_init", 0, "fakes_init.png"),
            ("reals", 0, "reals.png"),
            ("fakes", 8, "fakes000008.png"),
        ]

    def test_the_options_are_the_config_on_the_first_poll_and_again_when_they_change(self, tmp_path: Path):
        folder = write_stylegan_folder(tmp_path, ticks=1)
        reader = StyleganReader(tmp_path)
        assert reader.poll().config == folder.options
        assert reader.poll().config is None
        (tmp_path / "training_options.json").write_text(json.dumps({**folder.options, "total_kimg": 25000}))
        assert reader.poll().config == {**folder.options, "total_kimg": 25000}

    def test_a_half_written_options_file_waits_for_the_rest(self, tmp_path: Path):
        """train.py's json.dump writes in pieces: a reader may catch it midway."""
        folder = write_stylegan_folder(tmp_path, ticks=1)
        whole = (tmp_path / "training_options.json").read_text()
        (tmp_path / "training_options.json").write_text(whole[: len(whole) // 2])
        reader = StyleganReader(tmp_path)
        assert reader.poll().config is None
        (tmp_path / "training_options.json").write_text(whole)
        assert reader.poll().config == folder.options

    def test_an_options_file_far_larger_than_any_runs_settings_is_not_read_and_said_once(self, tmp_path: Path):
        """train.py writes a few kilobytes; a file of megabytes there is something else, and is not loaded."""
        write_stylegan_folder(tmp_path, ticks=1)
        (tmp_path / "training_options.json").write_text(json.dumps({"padding": "x" * (2 << 20)}))
        reader = StyleganReader(tmp_path)
        first = reader.poll()
        assert first.config is None and steps(first, "Loss/G/loss") == [0]
        assert [line for line in first.log_lines if "training_options.json" in line] == [
            "training_options.json is 2.1 MB, more than a run's settings: it is not read."
        ]
        assert reader.poll().log_lines == []

    def test_log_lines_arrive_once_each(self, tmp_path: Path):
        folder = write_stylegan_folder(tmp_path, ticks=1)
        reader = StyleganReader(tmp_path)
        assert reader.poll().log_lines[-1].startswith("tick 0 ")
        folder.ticks(1)
        assert [line.split()[:2] for line in reader.poll().log_lines] == [["tick", "1"]]
        assert reader.poll().log_lines == []

    def test_a_long_log_is_read_from_near_its_end(self, tmp_path: Path):
        folder = StyleganFolder(tmp_path).start()
        folder.log(*(f"line {n}" for n in range(LOG_TAIL_BYTES // 8)))
        lines = StyleganReader(tmp_path).poll().log_lines
        assert lines[-1] == f"line {LOG_TAIL_BYTES // 8 - 1}"
        assert 0 < len(lines) < LOG_TAIL_BYTES // 8 and lines[0].startswith("line ")

    def test_a_kimg_that_float32_left_just_under_a_whole_number_is_that_number(self, tmp_path: Path):
        """8.0 summed in float32 can read 7.9999995; the grid and snapshot of that tick say 8."""
        folder = StyleganFolder(tmp_path).start()
        folder.write_stats({**tick_record(2, 8000), "Progress/kimg": stat(7.9999995, 1)})
        assert steps(StyleganReader(tmp_path).poll(), "Loss/G/loss") == [8]


class TestFollowing:
    def test_growing_files_give_each_point_exactly_once(self, tmp_path: Path):
        folder = write_stylegan_folder(tmp_path, ticks=2)
        reader = StyleganReader(tmp_path)
        first = reader.poll()
        assert steps(first, "Loss/D/loss") == [0, 4]
        folder.ticks(2)
        second = reader.poll()
        assert steps(second, "Loss/D/loss") == [8, 12]
        assert steps(second, "Metrics/fid50k_full") == [8]
        assert images(second) == [("fakes", 8, "fakes000008.png")]
        assert not reader.poll()

    def test_a_torn_last_line_waits_for_its_newline(self, tmp_path: Path):
        folder = write_stylegan_folder(tmp_path, ticks=1)
        line = json.dumps(dict(tick_record(1, 4032), timestamp=1.7e9)) + "\n"
        with open(tmp_path / "stats.jsonl", "a") as handle:
            handle.write(line[:100])
        reader = StyleganReader(tmp_path)
        batch = reader.poll()
        assert steps(batch, "Loss/G/loss") == [0] and batch.bad_records == 0
        with open(folder.path / "stats.jsonl", "a") as handle:
            handle.write(line[100:])
        batch = reader.poll()
        assert steps(batch, "Loss/G/loss") == [4] and batch.bad_records == 0

    def test_unreadable_lines_are_passed_over_and_counted(self, tmp_path: Path):
        """A garbled line, ticks without a kimg, a metric of no snapshot: the lines around them still count."""
        folder = write_stylegan_folder(tmp_path, ticks=1)
        with open(tmp_path / "stats.jsonl", "a") as handle:
            handle.write('{"Loss/G/loss": {"num": 4, "mea\n')
            handle.write(json.dumps({"Loss/G/loss": stat(0.5)}) + "\n")
            handle.write(json.dumps({**tick_record(1, 4032), "Progress/kimg": stat(float("nan"), 1)}) + "\n")
        with open(tmp_path / "metric-fid50k_full.jsonl", "a") as handle:
            handle.write(json.dumps({"results": {"fid50k_full": 3.0}, "snapshot_pkl": None}) + "\n")
        folder.ticks(2)
        batch = StyleganReader(tmp_path).poll()
        assert steps(batch, "Loss/G/loss") == [0, 4, 8]
        assert steps(batch, "Metrics/fid50k_full") == [0, 8]
        assert batch.bad_records == 4

    def test_a_diverged_loss_is_a_nan_point_and_a_statistic_with_no_values_is_none(self, tmp_path: Path):
        """json.dumps writes NaN bare; num 0 is a name reported with no values yet, whose mean is NaN too."""
        folder = StyleganFolder(tmp_path).start()
        diverged = {"Loss/G/loss": stat(float("nan")), "Loss/r1_penalty": stat(float("nan"), num=0)}
        folder.write_stats({**tick_record(0, 32), **diverged})
        assert "NaN" in (tmp_path / "stats.jsonl").read_text()
        batch = StyleganReader(tmp_path).poll()
        assert steps(batch, "Loss/G/loss") == [0] and np.isnan(batch.scalars["Loss/G/loss"][1][0])
        assert "Loss/r1_penalty" not in batch.scalars
        assert batch.bad_records == 0

    def test_a_restarted_run_is_a_reset_and_everything_is_read_again(self, tmp_path: Path):
        """The loop opens stats.jsonl with 'wt': a run started again in the same folder cuts it back."""
        folder = write_stylegan_folder(tmp_path, ticks=4)
        reader = StyleganReader(tmp_path)
        assert steps(reader.poll(), "Loss/G/loss") == [0, 4, 8, 12]
        folder.start().ticks(1)
        batch = reader.poll()
        assert batch.reset
        assert steps(batch, "Loss/G/loss") == [0]
        assert batch.config == folder.options
        assert ("reals", 0, "reals.png") in images(batch)
        assert not reader.poll()

    def test_a_grid_is_handed_out_once_it_is_whole(self, tmp_path: Path):
        folder = write_stylegan_folder(tmp_path, ticks=1)
        reader = StyleganReader(tmp_path)
        reader.poll()
        folder.ticks(2)
        grid = (tmp_path / "fakes000008.png").read_bytes()
        (tmp_path / "fakes000008.png").write_bytes(grid[: len(grid) - 5])
        assert images(reader.poll()) == []
        (tmp_path / "fakes000008.png").write_bytes(grid)
        assert images(reader.poll()) == [("fakes", 8, "fakes000008.png")]

    def test_a_metric_computed_later_for_an_older_snapshot_is_in_step_order(self, tmp_path: Path):
        """calc_metrics.py appends to the same file, for whichever snapshot it was given."""
        folder = write_stylegan_folder(tmp_path, ticks=3)
        folder.report_metric("fid50k_full", tmp_path / "network-snapshot-000004.pkl", 42.0)
        batch = StyleganReader(tmp_path).poll()
        assert batch.scalars["Metrics/fid50k_full"][0].tolist() == [0, 4, 8]
        assert batch.scalars["Metrics/fid50k_full"][1].tolist() == [fid_value(0), 42.0, fid_value(8)]

    def test_a_folder_whose_run_has_not_begun_yet_is_followed_until_it_does(self, tmp_path: Path):
        reader = StyleganReader(tmp_path / "00000-ffhq")
        assert not reader.poll()
        folder = write_stylegan_folder(tmp_path / "00000-ffhq", ticks=1)
        batch = reader.poll()
        assert steps(batch, "Loss/G/loss") == [0] and batch.config == folder.options


def raw_tick(kimg: str, loss: str) -> str:
    """A stats.jsonl line with its numbers written as given: JSON that json.dumps would not write."""
    return f'{{"Progress/kimg": {{"num": 1, "mean": {kimg}}}, "Loss/G/loss": {{"num": 1, "mean": {loss}}}}}\n'


class TestOutOfRange:
    """Numbers no step or value can hold, as a hand-edited or garbled file may carry: passed over, never a crash."""

    def test_a_tick_whose_kimg_is_past_any_step_is_counted_and_the_others_read(self, tmp_path: Path):
        folder = write_stylegan_folder(tmp_path, ticks=1)
        with open(tmp_path / "stats.jsonl", "a") as handle:
            for kimg in ("1e20", "1e300", "9" * 400):
                handle.write(raw_tick(kimg, "1"))
        folder.ticks(1)
        batch = StyleganReader(tmp_path).poll()
        assert steps(batch, "Loss/G/loss") == [0, 4]
        assert batch.bad_records == 3

    def test_a_statistic_or_a_metric_whose_value_no_float_holds_is_left_out(self, tmp_path: Path):
        """A 400-digit integer is valid JSON, and Python's json module reads it whole."""
        folder = write_stylegan_folder(tmp_path, ticks=1)
        huge = "9" * 400
        with open(tmp_path / "stats.jsonl", "a") as handle:
            handle.write(raw_tick("2", huge))
        with open(tmp_path / "metric-fid50k_full.jsonl", "a") as handle:
            handle.write(f'{{"results": {{"fid50k_full": {huge}}}, "snapshot_pkl": "network-snapshot-000002.pkl"}}\n')
        folder.ticks(1)
        batch = StyleganReader(tmp_path).poll()
        assert steps(batch, "Loss/G/loss") == [0, 4] and steps(batch, "Progress/kimg") == [0, 2, 4]
        assert steps(batch, "Metrics/fid50k_full") == [0]
        assert batch.bad_records == 1

    def test_a_snapshot_or_a_grid_named_past_any_step_is_passed_over(self, tmp_path: Path):
        folder = write_stylegan_folder(tmp_path, ticks=1)
        far = "9" * 30
        folder.report_metric("fid50k_full", tmp_path / f"network-snapshot-{far}.pkl", 1.0)
        (tmp_path / f"fakes{far}.png").write_bytes((tmp_path / "reals.png").read_bytes())
        folder.ticks(1)
        batch = StyleganReader(tmp_path).poll()
        assert steps(batch, "Metrics/fid50k_full") == [0] and batch.bad_records == 1
        names = [name for *_, name in images(batch)]
        assert "reals.png" in names and f"fakes{far}.png" not in names


def test_files_that_cannot_be_opened_are_said_once_and_the_rest_is_read(tmp_path: Path, monkeypatch):
    """Another user's files, mode 0600 (tests run as root too, so open itself refuses here)."""
    write_stylegan_folder(tmp_path, ticks=3)
    refused = {tmp_path / "metric-fid50k_full.jsonl", tmp_path / "log.txt"}
    real_open = open

    def refusing_open(file, *args, **kwargs):
        if Path(file) in refused:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refusing_open)
    reader = StyleganReader(tmp_path)
    first, second = reader.poll(), reader.poll()
    assert steps(first, "Loss/G/loss") == [0, 4, 8] and "Metrics/fid50k_full" not in first.scalars
    assert sorted(first.log_lines) == [
        "log.txt cannot be read (permission denied): it is left out.",
        "metric-fid50k_full.jsonl cannot be read (permission denied): it is left out.",
    ]
    assert second.log_lines == []


class TestFinding:
    def test_a_training_folder_is_itself(self, tmp_path: Path):
        write_stylegan_folder(tmp_path / "00003-cifar", ticks=1)
        assert find_stylegan_runs(tmp_path / "00003-cifar") == [tmp_path / "00003-cifar"]

    def test_a_results_folder_gives_its_runs_by_name(self, tmp_path: Path):
        """Marked by stats.jsonl, or by training_options.json alone while the loop has not opened stats.jsonl."""
        write_stylegan_folder(tmp_path / "00001-ffhq-auto1", ticks=1)
        write_stylegan_folder(tmp_path / "00000-ffhq-auto1", ticks=1)
        (tmp_path / "00002-ffhq-auto1").mkdir()
        (tmp_path / "00002-ffhq-auto1" / "training_options.json").write_text("{}")
        (tmp_path / "datasets").mkdir()
        (tmp_path / "datasets" / "ffhq.zip").write_bytes(b"")
        assert find_stylegan_runs(tmp_path) == [tmp_path / f"0000{n}-ffhq-auto1" for n in range(3)]

    def test_runs_are_found_two_levels_down_and_no_deeper(self, tmp_path: Path):
        write_stylegan_folder(tmp_path / "sg2" / "00000-a", ticks=1)
        write_stylegan_folder(tmp_path / "old" / "sg3" / "00000-b", ticks=1)
        assert find_stylegan_runs(tmp_path) == [tmp_path / "sg2" / "00000-a"]

    def test_a_folder_without_runs_or_a_file_gives_none(self, tmp_path: Path):
        (tmp_path / "runs" / "faces").mkdir(parents=True)
        (tmp_path / "runs" / "faces" / "metrics.jsonl").write_text("")
        assert find_stylegan_runs(tmp_path) == []
        assert find_stylegan_runs(tmp_path / "runs" / "faces" / "metrics.jsonl") == []
        assert find_stylegan_runs(tmp_path / "missing") == []
