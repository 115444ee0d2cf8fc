"""core.runs: a run stores exactly what adapt returned; failures are stored as failed runs; bad input stores nothing."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch

import core.runs
from core.adapt import adapt as real_adapt
from core.checkpoint import CheckpointError, file_sha256, load_learner
from core.data.images import ImageSpec
from core.data.uploads import episode_from_uploads
from core.runs import RunFailed, checkpoint_spec, episode_from_items, rerun, run_rules
from core.store import Store
from tests.app.builders import TINY_IMAGE, save_sine_checkpoint, save_tiny_checkpoint, upload_classes, upload_queries

SPEC = ImageSpec.from_dict(TINY_IMAGE)


@pytest.fixture
def store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'runs.sqlite3'}") as opened:
        yield opened


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny.safetensors")


def uploads(labelled: bool | None = True):
    """Three classes, two shots each; queries all labelled, none (False) or partly (None)."""
    queries = upload_queries(3, labelled=labelled is not False)
    if labelled is None:
        queries[1] = (queries[1][0], queries[1][1], None)
    return episode_from_uploads(upload_classes(3, shots=2), queries, SPEC)


def run(store, checkpoint, rules=("alfa", "sgd"), episode_items=None, **options):
    episode, items = episode_items or uploads()
    arguments = {
        "store": store, "checkpoint_path": checkpoint, "rules": list(rules), "episode": episode, "items": items,
        "steps": 3, "device": "cpu", "source": "upload", "dataset": "upload", "split": None, "seed": None,
    }
    return run_rules(**{**arguments, **options})


def test_a_run_stores_exactly_what_adapt_returned(store, checkpoint, monkeypatch) -> None:
    results = []

    def recording_adapt(*args, **kwargs):
        results.append(real_adapt(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(core.runs, "adapt", recording_adapt)
    events = []
    episode, items = uploads()
    run_id = run(store, checkpoint, episode_items=(episode, items), on_progress=events.append, note="hello")
    detail = store.get_run(run_id)
    assert detail.status == "succeeded" and detail.error is None and detail.note == "hello"
    assert (detail.source, detail.dataset, detail.n_way, detail.k_shot, detail.steps) == ("upload", "upload", 3, 2, 3)
    assert detail.class_names == ["circle", "square", "cross"] and detail.device == "cpu"
    assert detail.checkpoint.file_sha256 == file_sha256(checkpoint) and detail.checkpoint_name == "tiny-alfa"
    assert detail.config["rules"] == ["alfa", "sgd"] and detail.config["image_spec"] == SPEC.to_dict()
    assert [a.rule for a in detail.adaptations] == ["alfa", "sgd"]
    assert [a.rule_label for a in detail.adaptations] == ["ALFA", "SGD (MAML)"]
    for stored, result in zip(detail.adaptations, results, strict=True):
        assert stored.predictions == result.predictions
        assert stored.probabilities == result.probabilities
        assert stored.truths == result.query_labels == [0, 1, 2]
        assert stored.accuracy == result.accuracy and stored.query_loss == result.query_loss
        assert stored.support_loss == result.support_loss and stored.support_accuracy == result.support_accuracy
        assert stored.traces == result.traces and len(stored.traces) == 3
        assert list(stored.traces[0]) == list(result.traces[0])  # layer order kept
        assert (stored.seconds, stored.head_init, stored.steps) == (result.seconds, result.head_init, 3)
    stored_bytes = [store.get_image(item.image_sha256)[0] for item in detail.items]
    assert stored_bytes == [item.image.data for item in items]
    # Per rule: loading, adapting before the first step and after each of the 3, then done.
    per_rule = ["loading", "adapting", "adapting", "adapting", "adapting", "done"]
    assert [(e.rule, e.stage) for e in events] == [("alfa", s) for s in per_rule] + [("sgd", s) for s in per_rule]
    assert [(e.step, e.steps) for e in events[1:6]] == [(0, 3), (1, 3), (2, 3), (3, 3), (3, 3)]
    assert events[5].accuracy == results[0].accuracy and events[0].total == 2


def test_the_loaded_learner_is_shared_and_never_modified(store, checkpoint) -> None:
    cache = {}
    calls = []

    def loader(path, rule, device):
        calls.append((path, rule, device))
        if rule not in cache:
            cache[rule] = load_learner(path, rule, device)
        return cache[rule]

    run(store, checkpoint, loader=loader)
    before = {rule: {k: v.clone() for k, v in learner.state_dict().items()} for rule, (learner, _) in cache.items()}
    run(store, checkpoint, loader=loader)
    assert [(c[1], c[2].type) for c in calls] == [("alfa", "cpu"), ("sgd", "cpu")] * 2
    for rule, (learner, _) in cache.items():
        for name, tensor in learner.state_dict().items():
            assert torch.equal(tensor, before[rule][name]), f"{rule}: {name} changed"


def test_partly_labelled_queries_are_scored_on_the_labelled_ones(store, checkpoint) -> None:
    detail = store.get_run(run(store, checkpoint, rules=["sgd"], episode_items=uploads(labelled=None)))
    adaptation = detail.adaptations[0]
    assert adaptation.truths == [0, None, 2]
    known = [p == t for p, t in zip(adaptation.predictions, adaptation.truths) if t is not None]
    assert adaptation.accuracy == sum(known) / 2 and adaptation.query_loss is None
    assert detail.config["labelled_queries"] == 2
    unlabelled = store.get_run(run(store, checkpoint, rules=["sgd"], episode_items=uploads(labelled=False)))
    assert unlabelled.adaptations[0].truths is None and unlabelled.adaptations[0].accuracy is None


def test_an_unsupported_rule_fails_the_run_after_the_rules_before_it(store, checkpoint) -> None:
    with pytest.raises(RunFailed, match="Meta-SGD: .*supports alfa, sgd") as raised:
        run(store, checkpoint, rules=["sgd", "meta_sgd", "alfa"])
    detail = store.get_run(raised.value.run_id)
    assert detail.status == "failed" and raised.value.rule == "meta_sgd"
    assert "Meta-SGD" in detail.error and "not 'meta_sgd'" in detail.error
    # The finished rule is kept whole; the failing one left nothing; the later one was not attempted.
    assert [a.rule for a in detail.adaptations] == ["sgd"]
    assert len(detail.adaptations[0].traces) == 3 and len(detail.items) == 9
    assert detail.config["rules"] == ["sgd", "meta_sgd", "alfa"]
    assert [s.status for s in store.list_runs()] == ["failed"]


def test_non_finite_values_fail_the_run(store, tmp_path) -> None:
    poisoned = save_tiny_checkpoint(tmp_path / "nan.safetensors", nan=True)
    with pytest.raises(RunFailed, match="ALFA: the support loss became nan at step 0") as raised:
        run(store, poisoned)
    detail = store.get_run(raised.value.run_id)
    assert detail.status == "failed" and detail.adaptations == [] and "nan" in detail.error
    assert detail.total_seconds is not None and len(detail.items) == 9


def test_any_exception_in_a_rule_is_stored_as_the_error(store, checkpoint, monkeypatch) -> None:
    def broken_adapt(learner, *args, **kwargs):
        if learner.rule.name == "sgd":
            raise RuntimeError("out of memory, pretend")
        return real_adapt(learner, *args, **kwargs)

    monkeypatch.setattr(core.runs, "adapt", broken_adapt)
    with pytest.raises(RunFailed) as raised:
        run(store, checkpoint)
    assert raised.value.error == "SGD (MAML): out of memory, pretend"
    detail = store.get_run(raised.value.run_id)
    assert detail.error == "SGD (MAML): out of memory, pretend" and [a.rule for a in detail.adaptations] == ["alfa"]


def test_a_loader_error_is_a_failed_run(store, checkpoint) -> None:
    def loader(path, rule, device):
        raise CheckpointError("disk went away")

    with pytest.raises(RunFailed, match="disk went away") as raised:
        run(store, checkpoint, loader=loader)
    assert store.get_run(raised.value.run_id).status == "failed"


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"rules": []}, ValueError, "at least one inner-loop rule"),
        ({"rules": ["sgd", "sgd"]}, ValueError, "each rule can be chosen once"),
        ({"steps": -1}, ValueError, "steps must be a whole number"),
        ({"steps": 2.5}, ValueError, "steps must be a whole number"),
        ({"source": "web"}, ValueError, "unknown run source 'web'"),
    ],
)
def test_bad_settings_store_nothing(store, checkpoint, options, error, message) -> None:
    with pytest.raises(error, match=message):
        run(store, checkpoint, **options)
    assert store.list_runs() == []


def test_bad_checkpoints_and_mismatched_episodes_store_nothing(store, checkpoint, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        run(store, tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        run(store, tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match="not an image-classification checkpoint"):
        run(store, save_sine_checkpoint(tmp_path / "sine.safetensors"))
    rgb = episode_from_uploads(upload_classes(3), upload_queries(3), ImageSpec(channels=3, size=28))
    with pytest.raises(ValueError, match=r"expects \(1, 28, 28\)"):
        run(store, checkpoint, episode_items=rgb)
    episode, items = uploads()
    with pytest.raises(ValueError, match="6 support and 3 query images.*5 support"):
        run(store, checkpoint, episode_items=(episode, items[1:]))
    items[0] = dataclasses.replace(items[0], label=2)
    with pytest.raises(ValueError, match="support item labels"):
        run(store, checkpoint, episode_items=(episode, items))
    assert store.list_runs() == []


def test_checkpoint_spec_rejects_regression_models(checkpoint, tmp_path) -> None:
    from core.checkpoint import read_metadata

    assert checkpoint_spec(read_metadata(checkpoint)) == SPEC
    sine = read_metadata(save_sine_checkpoint(tmp_path / "sine.safetensors"))
    with pytest.raises(ValueError, match="sine.safetensors is not an image-classification"):
        checkpoint_spec(sine, "sine.safetensors")


def test_rerun_repeats_the_stored_episode(store, checkpoint) -> None:
    first = store.get_run(run(store, checkpoint, episode_items=uploads(labelled=None)))
    again = store.get_run(rerun(store, first.id))
    assert again.id != first.id and again.note == f"re-run of run #{first.id}" and again.config["rerun_of"] == first.id
    assert [i.image_sha256 for i in again.items] == [i.image_sha256 for i in first.items]
    assert [(i.role, i.position, i.label, i.source_name) for i in again.items] == [
        (i.role, i.position, i.label, i.source_name) for i in first.items
    ]
    for old, new in zip(first.adaptations, again.adaptations, strict=True):
        assert new.predictions == old.predictions and new.truths == old.truths
        # Exact: the stored bytes decode to the same tensors, and the same operations on them in one process
        # round the same way; floats round-trip through the store unchanged.
        assert new.support_loss == old.support_loss


def test_rerun_of_a_failed_run_tries_every_rule_again(store, checkpoint, monkeypatch) -> None:
    def broken_adapt(learner, *args, **kwargs):
        raise RuntimeError("flaky")

    monkeypatch.setattr(core.runs, "adapt", broken_adapt)
    with pytest.raises(RunFailed) as raised:
        run(store, checkpoint)
    monkeypatch.setattr(core.runs, "adapt", real_adapt)
    again = store.get_run(rerun(store, raised.value.run_id))
    assert again.status == "succeeded" and [a.rule for a in again.adaptations] == ["alfa", "sgd"]


def test_rerun_finds_the_checkpoint_by_its_contents(store, checkpoint, tmp_path, monkeypatch) -> None:
    moved = tmp_path / "original" / "tiny.safetensors"
    moved.parent.mkdir()
    shutil.copy(checkpoint, moved)
    run_id = run(store, moved, rules=["sgd"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(moved, elsewhere / "renamed.safetensors")
    monkeypatch.setenv("FEWSHOT_DEFAULT_CHECKPOINT_DIRS", "")
    monkeypatch.setenv("FEWSHOT_CHECKPOINT_DIRS", str(elsewhere))
    again = store.get_run(rerun(store, run_id))
    assert again.checkpoint.path == str(elsewhere / "renamed.safetensors")
    (elsewhere / "renamed.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="is gone"):
        rerun(store, run_id)
    # The checkpoint row now names the path it was last used from; put other contents there.
    save_tiny_checkpoint(elsewhere / "renamed.safetensors", name="retrained")
    with pytest.raises(CheckpointError, match="has changed since the run"):
        rerun(store, run_id)
    with pytest.raises(KeyError):
        rerun(store, 12345)


def test_episode_from_items_rebuilds_labels() -> None:
    episode, items = uploads(labelled=None)
    rebuilt = episode_from_items(items, episode.class_names, SPEC)
    assert torch.equal(rebuilt.support_x, episode.support_x)
    assert torch.equal(rebuilt.query_x, episode.query_x)
    assert rebuilt.query_y is None and rebuilt.support_y.tolist() == episode.support_y.tolist()
    with pytest.raises(ValueError, match="no support or no query"):
        episode_from_items([i for i in items if i.role == "support"], episode.class_names, SPEC)


def test_a_benchmark_episode_of_real_omniglot(store, checkpoint, real_omniglot) -> None:
    from core.data.omniglot import OmniglotImageSet
    from core.data.sampler import EpisodeSampler
    from core.data.uploads import items_from_benchmark

    image_set = OmniglotImageSet(real_omniglot, alphabets=["Tagalog"], spec=SPEC)
    episode = EpisodeSampler(image_set, n_way=5, k_shot=1, n_query=2, seed=4).episode(0)
    run_id = run(
        store, checkpoint, episode_items=(episode, items_from_benchmark(episode)), source="benchmark",
        dataset="omniglot", seed=4,
    )
    detail = store.get_run(run_id)
    assert (detail.source, detail.dataset, detail.seed, detail.n_way, detail.k_shot, detail.n_query) == (
        "benchmark", "omniglot", 4, 5, 1, 2,
    )
    assert detail.class_names == episode.class_names and len(detail.items) == 15
    assert all(i.source_name.startswith("Tagalog/") for i in detail.items)
    assert all(a.accuracy is not None for a in detail.adaptations)


def test_a_started_run_is_stored_with_its_progress_even_if_nobody_waits(store, checkpoint) -> None:
    """start_run: the worker adapts and stores; the ticket shows the progress and the outcome afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    from core.runs import start_run

    episode, items = uploads()
    with ThreadPoolExecutor(1) as executor:
        ticket = start_run(executor, store=store, checkpoint_path=checkpoint, rules=["sgd"], episode=episode,
                           items=items, steps=2, device="cpu", source="upload", dataset="upload", split=None,
                           seed=None)
    assert ticket.done
    run_id, error = ticket.outcome()
    assert error is None and store.get_run(run_id).status == "succeeded"
    assert [(e.stage, e.step) for e in ticket.events] == [
        ("loading", 0), ("adapting", 0), ("adapting", 1), ("adapting", 2), ("done", 2)
    ]
    with ThreadPoolExecutor(1) as executor:
        refused = start_run(executor, store=store, checkpoint_path=checkpoint, rules=[], episode=episode,
                            items=items, steps=2, device="cpu", source="upload", dataset="upload", split=None,
                            seed=None)
    assert refused.outcome() == (None, "choose at least one inner-loop rule to adapt with")
    assert [s.id for s in store.list_runs()] == [run_id]
