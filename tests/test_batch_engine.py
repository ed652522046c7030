"""The mini-batch engine of parallel jobs and batch scoring jobs (aml_local/jobs/minibatch.py), driven directly: worker
processes running tests/batch_fixtures/faulty_score.py (standard library only) in this Python, with faults chosen per
file. What Azure documents and this checks: a mini-batch is tried again up to retry_settings.max_retries more times
when run() raises, returns fewer rows than items, or runs past the timeout; a killed worker's mini-batch is tried
again on a fresh worker; error_threshold counts failed items and mini_batch_error_threshold failed mini-batches
("How to use parallel jobs in pipelines", "Troubleshoot batch endpoints"); append_row writes each input once, and the
output file appears whole or not at all."""

import collections
import os
import sys
from pathlib import Path

import pytest

from aml_local.jobs import minibatch

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parent / "batch_fixtures" / "faulty_score.py"


def make_inputs(folder: Path, contents: dict[str, str]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in contents.items():
        (folder / name).write_text(content)
    return minibatch.list_items(folder)


def run_engine(tmp_path, items, **settings):
    tries = tmp_path / "tries"
    tries.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "AML_LOCAL_ENTRY_SCRIPT": str(SCRIPT),
        "AML_LOCAL_OUTPUT_ACTION": settings.get("output_action", "append_row"),
        "TRIES_DIR": str(tries),
        "PYTHONUNBUFFERED": "1",
    }
    events = []
    engine = minibatch.Engine(
        minibatch.Settings(**{"mini_batch_size": 2, "max_concurrency_per_instance": 2, "timeout": 20} | settings),
        launch=lambda index: (sys.executable, env),
        cwd=str(tmp_path),
        args=[],
        logs=tmp_path / "logs",
        say=events.append,
    )
    output = tmp_path / "score" / "predictions.csv"
    outcome = engine.run(items, output)
    return outcome, output, events, {p.name.removesuffix(".tries"): len(p.read_text().split()) for p in tries.iterdir()}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_every_input_is_written_once_and_the_partial_file_is_gone(tmp_path):
    items = make_inputs(tmp_path / "data", {f"{i:02d}.txt": str(i) for i in range(9)})
    outcome, output, events, _ = run_engine(tmp_path, items)
    assert (outcome.status, outcome.items, outcome.mini_batches, outcome.succeeded_items) == ("Completed", 9, 5, 9)
    assert sorted(lines(output)) == sorted(f"{i:02d}.txt {i * i}" for i in range(9))
    assert list(output.parent.iterdir()) == [output]  # no predictions.csv.partial left beside it
    assert any("items/s" in event for event in events), events  # progress lines, with the rate


def test_a_mini_batch_that_raises_is_tried_max_retries_more_times_then_its_items_fail(tmp_path):
    items = make_inputs(tmp_path / "data", {"a.txt": "1", "b.txt": "raise", "c.txt": "flaky", "d.txt": "4"})
    outcome, output, events, tries = run_engine(tmp_path, items, max_retries=2)
    # a and b are one mini-batch: b raises on every try (1 + 2 retries), so both fail; c raises once, then scores.
    assert tries == {"a.txt": 3, "b.txt": 3, "c.txt": 2, "d.txt": 1}
    assert (outcome.status, outcome.failed_mini_batches, outcome.failed_items) == ("Completed", 1, 2)
    assert sorted(lines(output)) == ["c.txt 0", "d.txt 16"]
    errors = (tmp_path / "logs" / "user" / "error.txt").read_text()
    assert "run() raised ValueError: cannot score b.txt" in errors
    assert any("mini-batch 0 failed after 3 tries" in event for event in events), events


def test_error_threshold_counts_failed_items_and_fails_the_job_without_an_output(tmp_path):
    items = make_inputs(tmp_path / "data", {"a.txt": "1", "b.txt": "raise", "c.txt": "3", "d.txt": "4"})
    outcome, output, _, _ = run_engine(tmp_path, items, max_retries=0, error_threshold=1)
    assert outcome.status == "Failed"
    assert outcome.message == "2 items failed, more than error_threshold (1)"
    assert not output.exists() and not output.with_name("predictions.csv.partial").exists()


def test_mini_batch_error_threshold_counts_failed_mini_batches(tmp_path):
    items = make_inputs(tmp_path / "data", {"a.txt": "raise", "b.txt": "2", "c.txt": "raise", "d.txt": "4"})
    outcome, _, _, _ = run_engine(tmp_path, items, max_retries=0, mini_batch_error_threshold=1)
    assert (outcome.status, outcome.message) == (
        "Failed",
        "2 mini-batches failed, more than mini_batch_error_threshold (1)",
    )


def test_a_corrupt_file_fails_its_item_is_named_in_the_logs_and_the_others_are_scored(tmp_path):
    items = make_inputs(tmp_path / "data", {"a.txt": "1", "bad.txt": "corrupt", "c.txt": "3"})
    outcome, output, _, tries = run_engine(tmp_path, items, max_retries=1, mini_batch_size=3)
    assert tries["bad.txt"] == 2  # a mini-batch with fewer rows than items is failed, and tried again
    assert (outcome.status, outcome.failed_items, outcome.succeeded_items) == ("Completed", 1, 2)
    assert sorted(lines(output)) == ["a.txt 1", "c.txt 9"]  # the last try's rows are kept, once
    errors = (tmp_path / "logs" / "user" / "error.txt").read_text()
    assert "run() returned 2 elements for 3 items: no row names bad.txt" in errors


def test_a_killed_worker_loses_nothing_and_doubles_nothing(tmp_path):
    contents = {f"{i}.txt": str(i) for i in range(8)} | {"4.txt": "kill"}
    items = make_inputs(tmp_path / "data", contents)
    outcome, output, events, tries = run_engine(tmp_path, items, max_retries=1)
    assert tries["4.txt"] == 2 and outcome.status == "Completed" and outcome.failed_items == 0
    written = collections.Counter(line.split()[0] for line in lines(output))
    assert written == collections.Counter(list(contents))  # each input exactly once
    assert any("killed by SIGKILL while running mini-batch 2" in event for event in events), events


def test_a_mini_batch_past_its_timeout_is_stopped_and_tried_again(tmp_path):
    items = make_inputs(tmp_path / "data", {"a.txt": "1", "slow.txt": "sleep"})
    outcome, output, events, tries = run_engine(tmp_path, items, max_retries=1, timeout=2, mini_batch_size=1)
    assert tries["slow.txt"] == 2 and outcome.status == "Completed"
    assert sorted(lines(output)) == ["a.txt 1", "slow.txt 0"]
    assert any("ran past retry_settings.timeout (2 s)" in event for event in events), events


def test_summary_only_writes_no_file_and_an_empty_input_fails(tmp_path):
    items = make_inputs(tmp_path / "data", {"a.txt": "1", "b.txt": "2"})
    outcome, output, _, _ = run_engine(tmp_path, items, output_action="summary_only")
    assert outcome.status == "Completed" and outcome.succeeded_items == 2 and not output.parent.exists()
    outcome, _, _, _ = run_engine(tmp_path, [])
    assert (outcome.status, outcome.message) == ("Failed", "the input has no files to score")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mini_batch_size", 0, "mini_batch_size 0: expected a whole number >= 1"),
        ("error_threshold", -2, "error_threshold -2: expected a whole number >= -1"),
        ("output_action", "append", "output_action 'append': expected append_row or summary_only"),
    ],
)
def test_settings_that_cannot_run_are_refused_in_one_line(field, value, message):
    with pytest.raises(minibatch.AmlLocalError, match=message):
        minibatch.check(minibatch.Settings(**{"mini_batch_size": 1, field: value}), "deployment.yml")
