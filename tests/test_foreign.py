"""Runs other code writes (TensorBoard's writer, StyleGAN's loop): names to roles, the family, `open_run`, following.

The formats are read here through a fake reader (tests/foreign_runs.py), so these tests say what the
viewer does with any format's batches; the real readers have tests of their own.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import ganterm
from ganterm.errors import UserError
from ganterm.run.layout import RunDir
from ganterm.run.schema import TAGS
from ganterm.sources import find_runs, foreign, open_run
from ganterm.sources.columns import distinct
from ganterm.sources.foreign import LIVE_SECONDS, ForeignRun
from ganterm.sources.roles import ROLES_FILE, Roles, guess_family, load_roles
from tests.dashboard_runs import append_metrics, metric_rows
from tests.foreign_runs import FakeReader, dcgan_records, fake_format, fake_formats, write_log

__all__ = ["fake_formats"]  # the fixture, used by name

PNG = b"\x89PNG\r\n\x1a\n"


def _png(path: Path, shade: int = 90) -> bytes:
    Image.new("RGB", (8, 8), (shade, 40, 200)).save(path)
    return path.read_bytes()


# ----- names and roles ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "role"),
    [
        ("loss/D", "loss_d"), ("Loss_D", "loss_d"), ("errD", "loss_d"), ("d_loss", "loss_d"), ("D/loss", "loss_d"),
        ("loss-d", "loss_d"), ("LOSS D", "loss_d"), ("Loss/G", "loss_g"), ("errG", "loss_g"), ("g_loss", "loss_g"),
        ("D(x)", "d_x"), ("D_x", "d_x"), ("D_G_z", "d_g_z1"), ("D_G_z1", "d_g_z1"), ("D_G_z2", "d_g_z2"),
        ("gradient_penalty", "gp"), ("gp", "gp"), ("r1", "r1"), ("wasserstein", "score_gap"),
        ("Loss/G/loss", "loss_g"), ("Loss/D/loss", "loss_d"), ("Loss/scores/real", "d_x"),
        ("Loss/scores/fake", "d_g_z1"),
    ],
)  # fmt: skip
def test_common_names_map_to_roles_whatever_their_case_and_separators(tag: str, role: str):
    assert Roles().role(tag) == role


def test_ganterms_own_export_tags_read_back_as_its_names():
    """A run ganterm exported to TensorBoard, watched as event files, shows in the same panels."""
    assert {name: Roles().role(tag) for name, tag in TAGS.items()} == {name: name for name in TAGS}
    assert Roles().role("quality/precision") == "precision"


@pytest.mark.parametrize("tag", ["Loss/signs/real", "Loss/r1_penalty", "Progress/augment", "Metrics/fid50k_full",
                                 "my_metric", "D/accuracy"])  # fmt: skip
def test_every_other_tag_keeps_its_own_name(tag: str):
    """StyleGAN's r1_penalty is unweighted, its signs are ADA's measure: no ganterm role reads them right."""
    assert Roles().role(tag) == tag


def test_a_roles_file_fixes_a_mapping_ignores_a_tag_and_names_the_loss(tmp_path: Path):
    path = tmp_path / ROLES_FILE
    path.write_text('loss = "wgan-gp"\n[roles]\n"critic/real" = "d_x"\n"errD" = "ignore"\n')
    roles = load_roles(path)
    assert roles.role("critic/real") == "d_x" and roles.role("errD") is None and roles.role("errG") == "loss_g"
    assert guess_family("tensorboard", roles, [np.array([5.0])]) == "critic"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('loss = "wgan"', r"loss must be one of .*wgan-gp.*, not 'wgan'$"),
        ('[roles]\n"a" = "loss_x"', r"tag 'a' must map to 'ignore' or one of .*loss_d.*, not 'loss_x'$"),
        ("roles = 3", r"\[roles\] must be a table of tag = role, not 3$"),
        ('lost = "x"', r"may hold only `loss` and a \[roles\] table, not 'lost'$"),
        ("[roles\n", r"is not valid TOML"),
    ],
)
def test_a_bad_roles_file_is_one_sentence(tmp_path: Path, text: str, says: str):
    path = tmp_path / "roles.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=f"^roles file {str(path)!r}.*{says}") as error:
        load_roles(path)
    assert "\n" not in str(error.value).strip()


def test_a_missing_roles_file_is_one_sentence(tmp_path: Path):
    with pytest.raises(UserError, match=r"^roles file '.*nope.toml' does not exist$"):
        load_roles(tmp_path / "nope.toml")


def test_the_family_guess_never_reads_logits_or_scores_as_probabilities():
    roles = Roles()
    assert guess_family("tensorboard", roles, [np.array([0.6, 0.9]), np.array([0.1, np.nan])]) == "probability"
    assert guess_family("tensorboard", roles, [np.array([0.6, 1.7])]) == "raw"  # a critic's or a logit
    assert guess_family("tensorboard", roles, []) == "raw"  # no D outputs: nothing says what the loss is
    assert guess_family("stylegan", roles, [np.array([0.2, 0.4])]) == "logit"  # logits that happen to be small


# ----- open_run and find_runs ----------------------------------------------------------------------


def test_a_foreign_run_reads_in_ganterms_names(tmp_path: Path, fake_formats: None):
    folder = tmp_path / "tb" / "dcgan"
    write_log(folder, [{"config": {"lr": 0.0002, "batch": 128, "hook": "https://user:pw@example.com/x"}}])
    write_log(folder, [*dcgan_records(1, 50), {"tag": "my_metric", "step": 10, "value": 3.0}, {"skip": "histogram"}])
    write_log(folder, [], torn=b'{"tag": "Loss_D", "step": 51, "va')  # a writer mid-record: no error
    run = ganterm.open_run(folder)
    assert isinstance(run, ForeignRun) and run.kind == "tensorboard" and run.name == "dcgan"
    assert run.read_only and run.controls == ()
    assert set(run.metrics()) == {"loss_d", "loss_g", "d_x", "d_g_z1", "my_metric"}
    steps, values = run.metrics(["loss_d"])["loss_d"]
    assert steps.tolist() == list(range(1, 51)) and values[0] == pytest.approx(1.2 + 0.1 * np.sin(1 / 7))
    history = run.history()
    assert history["step"].tolist() == list(range(1, 51)) and np.isnan(history["my_metric"]).sum() == 49
    assert run.latest(("loss_g", "step")) == {"loss_g": pytest.approx(0.9 + 0.1 * np.sin(50 / 7)), "step": 50}
    assert run.rows()[9] == {"step": 10, **{name: pytest.approx(history[name][9]) for name in
                                            ("loss_d", "loss_g", "d_x", "d_g_z1", "my_metric")}}  # fmt: skip
    assert run.config()["batch"] == 128 and run.settings()["batch"] == 128
    assert "pw" not in run.config()["hook"] and "pw" not in run.settings()["hook"]  # a secret is never shown
    status = run.status()
    assert status["state"] == "live" and status["loss"] == "probability" and status["step"] == 50
    assert status["writer"] == "TensorBoard's writer" and status["skipped"] == {"histogram": 1}


def test_the_state_is_idle_since_the_last_write_after_the_live_window(tmp_path: Path, fake_formats: None):
    folder = tmp_path / "run"
    write_log(folder, dcgan_records(1, 3))
    then = time.time() - LIVE_SECONDS - 30
    os.utime(folder / "fake.log", (then, then))
    status = ganterm.open_run(folder).status()
    assert status["state"] == "idle" and status["since"] == pytest.approx(then, abs=1)


def test_a_long_history_arrives_in_pieces_and_reads_whole(tmp_path: Path, fake_formats: None):
    write_log(tmp_path / "run", dcgan_records(1, 1000))  # 4,000 lines: the newest 200, then 13 pieces
    steps, _ = ganterm.open_run(tmp_path / "run").metrics()["d_x"]
    assert steps.tolist() == list(range(1, 1001))


def test_a_rewritten_file_is_read_again_and_a_corrupt_record_is_passed_over(tmp_path: Path, fake_formats: None):
    folder = tmp_path / "run"
    write_log(folder, dcgan_records(1, 20))
    run = ganterm.open_run(folder)
    assert run.latest(("step",)) == {"step": 20}
    (folder / "fake.log").unlink()
    write_log(folder, dcgan_records(1, 5))
    with open(folder / "fake.log", "ab") as handle:
        handle.write(b"\x00\x17garbage\n")
    write_log(folder, dcgan_records(6, 7))
    assert run.latest(("step",)) == {"step": 7}  # the cached read noticed the file changed
    assert run.pinned_rows().skipped_note() == "run: passed over 1 corrupt record(s) of its tensorboard files"


def test_alerts_are_the_health_checks_over_the_history_with_the_runs_family(tmp_path: Path, fake_formats: None):
    """D(x) near 1 and D(G(z)) near 0 for 400 steps: a probability D overpowering G; as raw scores, nothing."""
    winning = [
        {"tag": tag, "step": step, "value": value}
        for step in range(1, 401)
        for tag, value in (("Loss_D", 0.05), ("Loss_G", 4.0), ("D(x)", 0.99), ("D_G_z1", 0.01))
    ]
    write_log(tmp_path / "prob", winning)
    alerts = ganterm.open_run(tmp_path / "prob").events("alert")
    assert [alert["check"] for alert in alerts] == ["d_overpowering"] and 200 <= alerts[0]["step"] <= 210
    assert "a lower learning rate for D" in alerts[0]["message"] and "train.lr_d" not in alerts[0]["message"]
    write_log(tmp_path / "raw", [*winning, {"tag": "D(x)", "step": 401, "value": 3.0}])
    assert ganterm.open_run(tmp_path / "raw").events() == []  # one score past 1: no probability, no such check
    assert ganterm.open_run(tmp_path / "raw").events("status") == []


def test_images_are_samples_by_step_and_bytes_go_to_the_cache_once(
    tmp_path: Path, fake_formats: None, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "run"
    folder.mkdir()
    data = _png(folder / "fakes000040.png")
    write_log(folder, [{"tag": "fakes", "step": 40, "image": str(folder / "fakes000040.png")},
                       {"tag": "images/fake", "step": 20, "image": "bytes:" + data.hex()}])  # fmt: skip
    run = ganterm.open_run(folder)
    (step20, cached), (step40, own) = run.samples()
    assert (step20, step40) == (20, 40) and own == folder / "fakes000040.png"
    assert cached.is_relative_to(tmp_path / "cache" / "ganterm") and cached.read_bytes() == data
    assert cached.name == "step_0000020.png"
    stamp = cached.stat().st_mtime_ns
    assert run.samples()[0][1] == cached and cached.stat().st_mtime_ns == stamp  # not written again


def test_checkpoints_are_styleGANs_network_snapshots(tmp_path: Path, fake_formats: None):
    folder = tmp_path / "run"
    write_log(folder, dcgan_records(1, 2))
    for name in ("network-snapshot-000200.pkl", "network-snapshot-000000.pkl", "network-snapshot-x.pkl"):
        (folder / name).write_bytes(b"")
    assert [step for step, _ in ganterm.open_run(folder).checkpoints()] == [0, 200]


def test_a_ganterm_run_folder_comes_first_and_a_logdir_of_runs_asks_for_one(tmp_path: Path, fake_formats: None):
    ganterm_run = tmp_path / "logs" / "mine"
    ganterm_run.mkdir(parents=True)
    append_metrics(RunDir(ganterm_run), metric_rows(1, 3))
    write_log(ganterm_run, dcgan_records(1, 2))  # event files beside ganterm's own rows do not make it foreign
    write_log(tmp_path / "logs" / "a", dcgan_records(1, 2))
    write_log(tmp_path / "logs" / "b" / "seed1", dcgan_records(1, 2))
    assert ganterm.open_run(ganterm_run).kind == "ganterm"
    with pytest.raises(UserError, match=r"holds 2 runs \(a, b/seed1\): name one, or watch them all with: "):
        ganterm.open_run(tmp_path / "logs")
    assert [(run.kind, run.name) for run in find_runs(tmp_path / "logs")] == [
        ("ganterm", "mine"),
        ("tensorboard", "a"),
        ("tensorboard", "b/seed1"),
    ]  # named as TensorBoard names runs: two seed1 folders under a logdir stay apart
    assert ganterm.open_run("a", root=tmp_path / "logs").kind == "tensorboard"  # a name under a root


def test_a_folder_two_formats_find_is_read_by_the_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A StyleGAN folder holds event files too, with the same numbers: StyleGAN's reader reads it."""
    import ganterm.sources

    monkeypatch.setattr(ganterm.sources, "formats", lambda: [fake_format("stylegan"), fake_format("tensorboard")])
    write_log(tmp_path / "00000-ffhq", dcgan_records(1, 2))
    assert [run.kind for run in find_runs(tmp_path)] == ["stylegan"]
    assert open_run(tmp_path / "00000-ffhq").status()["loss"] == "logit"


def test_a_roles_file_beside_the_run_or_given_is_used(tmp_path: Path, fake_formats: None):
    folder = tmp_path / "run"
    write_log(folder, [{"tag": "critic/real", "step": 1, "value": 4.0}])
    (folder / ROLES_FILE).write_text('loss = "wgan-gp"\n[roles]\n"critic/real" = "d_x"\n')
    run = ganterm.open_run(folder)
    assert list(run.metrics()) == ["d_x"] and run.status()["loss"] == "critic"
    other = tmp_path / "other.toml"
    other.write_text('[roles]\n"critic/real" = "ignore"\n')
    assert ganterm.open_run(folder, roles=other).metrics() == {}


def test_a_folder_with_no_run_of_any_kind_is_one_sentence(tmp_path: Path, fake_formats: None):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no run named .* and no run directory at that path"):
        ganterm.open_run(tmp_path / "empty")


def test_a_reader_whose_dependency_is_missing_is_left_out_and_said_where_it_would_have_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`ganterm runs` goes on listing; a folder nothing could read says what to install."""
    import ganterm.sources

    (tmp_path / "needs_more.py").write_text("import not_installed_here_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        ganterm.sources,
        "FORMAT_MODULES",
        (("tensorboard", "needs_more", "find", "Reader"), ("stylegan", "ganterm.sources.not_there", "f", "R")),
    )
    monkeypatch.setattr(ganterm.sources, "MISSING", {})
    (tmp_path / "logs").mkdir()
    assert find_runs(tmp_path / "logs") == []
    with pytest.raises(
        UserError,
        match=r"no run directory at that path.* \(reading tensorboard runs needs "
        r"not_installed_here_xyz, which is not installed\)$",
    ):
        ganterm.open_run(tmp_path / "logs")


# ----- following ---------------------------------------------------------------------------------


def _poll_all(reader, limit: int = 100):
    updates = []
    for _ in range(limit):
        update = reader.poll()
        updates.append(update)
        if not update.more:
            break
    return updates


def test_following_hands_the_newest_steps_first_then_the_history_in_ganterms_names(tmp_path: Path,
                                                                                    fake_formats: None):  # fmt: skip
    folder = tmp_path / "run"
    write_log(folder, dcgan_records(1, 500))
    reader = ganterm.open_run(folder).follow()
    first, *rest = _poll_all(reader)
    assert first.more and set(first.columns) == {"loss_d", "loss_g", "d_x", "d_g_z1"}
    assert first.columns["d_x"][0].tolist() == list(range(451, 501)) and first.rows == 50
    assert first.status == {"state": "live", "since": pytest.approx(time.time(), abs=60), "kind": "tensorboard",
                            "writer": "TensorBoard's writer", "read_only": True, "loss": "probability"}  # fmt: skip
    older = [update.history["d_x"][0] for update in rest if update.history]
    assert np.concatenate(older[::-1]).tolist() == list(range(1, 451)) and not rest[-1].more
    write_log(folder, dcgan_records(501, 502), torn=b'{"tag": "D(x)", "st')
    update = reader.poll()
    assert update.columns["d_x"][0].tolist() == [501, 502] and update.status["since"] > first.status["since"]
    assert reader.poll().status is None  # told only when it changed
    reader.close()


def test_following_raises_alerts_once_the_history_is_in_then_as_new_steps_come(tmp_path: Path, fake_formats: None):
    folder = tmp_path / "run"
    healthy = dcgan_records(1, 600)
    write_log(folder, healthy)
    reader = ganterm.open_run(folder).follow()
    assert [event for update in _poll_all(reader) for event in update.events] == []
    write_log(folder, [
        {"tag": tag, "step": step, "value": value}
        for step in range(601, 900)
        for tag, value in (("Loss_D", 0.05), ("Loss_G", 4.0), ("D(x)", 0.99), ("D_G_z1", 0.01))
    ])  # fmt: skip
    alerts = reader.poll().events
    assert [alert["check"] for alert in alerts] == ["d_overpowering", "divergence"]  # loss_g went 0.9 → 4
    assert all(alert["kind"] == "alert" and alert["t"] > reader.opened for alert in alerts)  # new: they ring
    reader.close()


def test_following_tells_images_settings_and_a_rewritten_file(tmp_path: Path, fake_formats: None,
                                                               monkeypatch: pytest.MonkeyPatch):  # fmt: skip
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "run"
    write_log(folder, [{"config": {"train": {"lr": 0.001}}}, *dcgan_records(1, 3)])
    reader = ganterm.open_run(folder).follow()
    first = reader.poll()
    assert first.settings == {"train.lr": 0.001} and first.samples is None
    write_log(folder, [{"tag": "fake", "step": 3, "image": "bytes:" + _png(tmp_path / "a.png").hex()}])
    (sample,) = reader.poll().samples
    assert sample.name == "step_0000003.png" and sample.read_bytes().startswith(PNG)
    (folder / "fake.log").unlink()
    write_log(folder, dcgan_records(1, 2))
    update = reader.poll()
    assert update.reset and update.samples == [] and update.columns["loss_d"][0].tolist() == [1, 2]
    reader.close()
    assert FakeReader.closed[-1] == folder


def test_pinned_rows_are_what_an_export_writes(tmp_path: Path, fake_formats: None):
    write_log(tmp_path / "run", dcgan_records(1, 5000))
    pinned = ganterm.open_run(tmp_path / "run").pinned_rows()
    chunks = list(pinned.chunks())
    assert pinned.rows == 5000 and [len(chunk) for chunk in chunks] == [4096, 904]
    first = dict(zip(("loss_d", "loss_g", "d_x", "d_g_z1"), (1.2, 0.9, 0.6, 0.4), strict=True))
    wobble = np.sin(1 / 7)
    assert chunks[0][0] == {"step": 1, **{name: pytest.approx(value + wobble * (0.1 if "loss" in name else 0.05))
                                          for name, value in first.items()}}  # fmt: skip
    assert set(pinned.names()) == {"step", "loss_d", "loss_g", "d_x", "d_g_z1"}
    assert pinned.skipped_note() is None


def test_the_tag_that_claims_a_role_first_keeps_it_and_a_second_keeps_its_name(tmp_path: Path, fake_formats: None):
    write_log(tmp_path / "run", [{"tag": "loss/D", "step": 1, "value": 1.0}, {"tag": "errD", "step": 1, "value": 2.0}])
    assert sorted(ganterm.open_run(tmp_path / "run").metrics()) == ["errD", "loss_d"]


def test_a_long_history_is_checked_a_stretch_a_poll_and_its_alerts_ring_no_bell(
    tmp_path: Path, fake_formats: None, monkeypatch: pytest.MonkeyPatch
):
    """The checks read 100 steps a poll here: the reader says there is more until they are through."""
    monkeypatch.setattr(foreign, "ALERT_ROWS_A_POLL", 100)
    winning = [{"tag": tag, "step": step, "value": value} for step in range(1, 501)
               for tag, value in (("Loss_D", 0.05), ("Loss_G", 0.9), ("D(x)", 0.99), ("D_G_z1", 0.01))]  # fmt: skip
    write_log(tmp_path / "run", winning)
    reader = ganterm.open_run(tmp_path / "run").follow()
    updates = _poll_all(reader)
    checking = [update for update in updates if not update.history and not update.columns]
    assert len(checking) >= 4 and all(update.more for update in checking[:-1]) and not checking[-1].more
    (alert,) = [event for update in updates for event in update.events]
    assert alert["check"] == "d_overpowering" and alert["t"] == reader.opened  # from before the viewer opened
    reader.close()


def test_alerts_are_checked_once_until_a_file_changes(tmp_path: Path, fake_formats: None,
                                                       monkeypatch: pytest.MonkeyPatch):  # fmt: skip
    """A million steps take the checks minutes: a script asking twice waits once."""
    write_log(tmp_path / "run", dcgan_records(1, 300))
    run = ganterm.open_run(tmp_path / "run")
    assert run.events() == []
    checked: list[int] = []
    monkeypatch.setattr(foreign, "alert_events", lambda monitor, columns, t: checked.append(1) or [])
    assert run.events("alert") == [] and checked == []
    write_log(tmp_path / "run", dcgan_records(301, 302))
    assert run.events() == [] and checked == [1]


def test_a_tag_named_step_or_t_is_not_taken_for_the_rows_coordinates(tmp_path: Path, fake_formats: None):
    write_log(tmp_path / "run", [{"tag": "step", "step": 5, "value": 3.0}, {"tag": "T", "step": 5, "value": 9.0},
                                 {"tag": "t", "step": 6, "value": 1.0}])  # fmt: skip
    run = ganterm.open_run(tmp_path / "run")
    assert run.history()["step"].tolist() == [5, 6]
    assert run.rows() == [{"step": 5, "own/step": 3.0, "T": 9.0}, {"step": 6, "own/t": 1.0}]


@given(st.lists(st.integers(min_value=0, max_value=50), max_size=40))
def test_distinct_steps_are_np_uniques_answer(steps: list[int]):
    values = np.array(steps, dtype=np.int64)
    assert distinct(values).tolist() == np.unique(values).tolist()


def test_a_long_history_is_in_without_merging_at_every_poll(monkeypatch: pytest.MonkeyPatch):
    """While the history arrives newest first (more=True), the health columns wait in pieces; merged once."""
    merged: list[int] = []
    real = foreign.columns_in_step_order
    monkeypatch.setattr(foreign, "columns_in_step_order", lambda columns: merged.append(1) or real(columns))
    reader = ForeignRun(Path("unused"), FakeReader, "tensorboard").follow()  # fed by hand below, never polled
    pieces = [{"d_x": (np.arange(start, start + 100), np.full(100, 0.5))} for start in range(900, -1, -100)]
    for index, piece in enumerate(pieces):
        reader._alerts(piece if index else {}, {} if index else piece, more=index < len(pieces) - 1)
    assert merged == [1] and reader._health["d_x"][0].tolist() == list(range(1000))


def test_steps_that_come_while_the_history_is_being_checked_are_checked_after_it(
    tmp_path: Path, fake_formats: None, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(foreign, "ALERT_ROWS_A_POLL", 100)
    write_log(tmp_path / "run", dcgan_records(1, 500))
    reader = ganterm.open_run(tmp_path / "run").follow()
    while not reader.poll().events and reader._backlog is None:
        pass  # until the checks have started on the history
    write_log(tmp_path / "run", [{"tag": tag, "step": step, "value": value} for step in range(501, 800)
                                 for tag, value in (("Loss_D", 0.05), ("Loss_G", 0.9), ("D(x)", 0.99),
                                                    ("D_G_z1", 0.01))])  # fmt: skip
    events = [event for update in _poll_all(reader) for event in update.events]
    assert [event["check"] for event in events] == ["d_overpowering"] and events[0]["step"] > 500
    reader.close()
