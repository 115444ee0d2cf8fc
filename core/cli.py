"""Command line: ``python -m core train | pretrain | evaluate | adapt | info | package | worker | jobs``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path


def _die(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


@contextlib.contextmanager
def _kill_saves_like_ctrl_c() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while training runs, so a kill saves the state as Ctrl-C does.

    The previous handler comes back afterwards: a caller in the same process (a test, a notebook) keeps its own.
    """

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def trainer_from_args(args: argparse.Namespace, ranks=None):
    """The ``core.train.Trainer`` of ``train``'s arguments (the config with ``--output-dir`` and ``--iterations``
    applied); a background train job (``core.jobs``) builds its trainer here too. ``ranks``
    (``core.distributed.Ranks``): a torchrun process, whose ``--device`` is already this rank's device."""
    from core.config import load_config
    from core.train import Trainer

    config = load_config(args.config)
    if args.output_dir:
        config.output_dir = args.output_dir
    if args.iterations:
        config.meta.iterations = args.iterations
    return Trainer(config, device=args.device, progress=not args.no_progress, ranks=ranks)


def cmd_train(args: argparse.Namespace) -> int:
    from core.distributed import process_group, ranks_from_environment

    ranks = ranks_from_environment()  # under torchrun with several processes; None alone
    with contextlib.ExitStack() as stack:
        if ranks is not None:
            # This rank's device: cuda:LOCAL_RANK on GPUs (NCCL), else the CPU (gloo).
            args.device = str(stack.enter_context(process_group(ranks, args.device)))
        trainer = trainer_from_args(args, ranks)
        try:
            with _kill_saves_like_ctrl_c():
                summary = trainer.run(resume=args.resume)
        except KeyboardInterrupt:
            return 130
    if ranks is None or ranks.is_main:
        print(json.dumps(summary, indent=2))
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from core.checkpoint.metadata import pretraining_dict
    from core.config import load_config
    from core.pretrain import Pretrainer, load_pretrained, pretrained_path

    config = load_config(args.config)
    if args.output_dir:
        config.output_dir = args.output_dir
    if config.pretrain.epochs < 1:
        return _die(f"{args.config} has no [pretrain] stage (pretrain.epochs is 0)")
    path = pretrained_path(config)
    if path.is_file():
        load_pretrained(config)  # refuses a file from another recipe
        print(f"{path} is already pre-trained for this config", file=sys.stderr)
        return 0

    try:
        with _kill_saves_like_ctrl_c():
            Pretrainer(config, device=args.device, progress=not args.no_progress).run()
    except KeyboardInterrupt:
        return 130
    _, record = load_pretrained(config)
    print(json.dumps(pretraining_dict(record), indent=2))
    return 0


def _training_config(metadata, what: str):
    """The checkpoint's training config (``core.config.TrainConfig``); ``ValueError`` saying what is missing."""
    from core.config import config_from_dict

    if metadata.training is None or metadata.training.config is None:
        raise ValueError(f"this checkpoint does not record its training config; {what}")
    return config_from_dict(dict(metadata.training.config))


def _image_spec(metadata):
    if metadata.image is None:
        raise ValueError(f"{metadata.name} is not an image model: its metadata has no image preprocessing")
    return metadata.image


def _evaluation_set(args, metadata):
    from core.data.factory import build_image_set
    from core.data.folders import FolderImageSet

    spec = _image_spec(metadata)
    if args.folder:
        return FolderImageSet(args.folder, args.split, spec, name=Path(args.folder).name)
    config = _training_config(metadata, "pass --folder ROOT [--split NAME]")
    if args.data_root:
        config.data.root = args.data_root
    role = args.split or "test"
    if role not in ("train", "val", "test"):
        raise ValueError("--split must be train, val or test unless --folder is given")
    if not getattr(config.data, role):
        raise ValueError(f"the checkpoint's training config has no {role} split; pass --folder ROOT --split NAME")
    return build_image_set(config, role)


def evaluation_from_args(args: argparse.Namespace, on_progress=None):
    """Run the evaluation ``evaluate``'s arguments ask for; returns (checkpoint path, device, ``EvaluationResult``).
    ``on_progress(done, episodes)`` after each episode; a background evaluate job (``core.jobs``) runs this too."""
    from core.checkpoint import load_learner
    from core.device import pick_device
    from core.evaluate import evaluate_classification, evaluate_regression

    device = pick_device(args.device)
    args.checkpoint = _checkpoint(args)
    learner, metadata = load_learner(args.checkpoint, rule=args.rule, device=device)
    steps = args.steps if args.steps is not None else metadata.inner_steps.eval
    if learner.task_kind == "regression":
        from core.data.sine import SineTaskFamily

        if args.within_alphabet:
            raise ValueError("--within-alphabet groups image classes; a sine regression checkpoint has none")

        shot = args.shot or _training_config(metadata, "pass --shot").task.k_shot
        result = evaluate_regression(
            learner, SineTaskFamily(), shot, episodes=args.episodes, steps=steps, seed=args.seed,
            progress=not args.json, on_progress=on_progress,
        )
    else:
        image_set = _evaluation_set(args, metadata)
        if args.within_alphabet and image_set.group_kind != "alphabet":
            raise ValueError(f"--within-alphabet needs Omniglot classes, grouped by alphabet; {image_set.name!r} has no alphabets")
        way = args.way or metadata.trained_way
        if way is None:
            raise ValueError("this checkpoint does not record its class count; pass --way")
        result = evaluate_classification(
            learner, image_set, way, args.shot or 1, args.query, args.episodes,
            steps, seed=args.seed, head_init=args.head_init, progress=not args.json, within_group=args.within_alphabet,
            support_augment=_support_augment(args, metadata), on_progress=on_progress,
        )
    return args.checkpoint, device, result


def cmd_evaluate(args: argparse.Namespace) -> int:
    checkpoint, device, result = evaluation_from_args(args)
    payload = {"checkpoint": str(checkpoint), "device": str(device), **result.to_dict()}
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        what = "accuracy" if result.metric == "accuracy" else "MSE"
        shape = f"{result.n_way}-way {result.k_shot}-shot" if result.n_way else f"{result.k_shot}-shot"
        if result.protocol is not None:
            shape += f" ({result.protocol})"
        if result.support_augment is not None:
            shape += f", {result.support_augment['copies']} augmented copies of each support image"
        print(f"{result.rule} {shape}, {result.episodes} episodes, {result.steps} steps: {what} {result.summary()} (95% CI)")
    return 0


def _support_augment(args: argparse.Namespace, metadata):
    """``--tta-copies N`` [``--tta-ranges TABLE``] as a ``SupportAugment``; the ranges default to the ones the
    checkpoint was trained with (``[data] augment``), so a checkpoint trained without augmentation needs them."""
    from core.data.augment import AugmentConfig, SupportAugment

    if not args.tta_copies:
        if args.tta_ranges:
            raise ValueError("--tta-ranges needs --tta-copies N (how many distorted copies of each support image)")
        return None
    if args.tta_ranges:
        try:
            table = tomllib.loads(f"ranges = {args.tta_ranges}")["ranges"]
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"--tta-ranges must be a TOML inline table such as "
                             f"'{{ rotation = 10, shear = 10, scale = [0.85, 1.15], translate = 0.1 }}': {error}") from None
        try:
            ranges = AugmentConfig.from_table(table)
        except (TypeError, ValueError) as error:
            raise ValueError(f"--tta-ranges: {error}") from None
    else:
        trained = _training_config(metadata, "pass --tta-ranges").data.augment
        if trained.is_identity:
            raise ValueError("this checkpoint was trained without augmentation, so it has no ranges to reuse; pass "
                             "--tta-ranges '{ rotation = 10, shear = 10, scale = [0.85, 1.15], translate = 0.1 }'")
        ranges = trained
    return SupportAugment(args.tta_copies, ranges)


def cmd_adapt(args: argparse.Namespace) -> int:
    from core.adapt import adapt
    from core.checkpoint import load_learner
    from core.data.folders import load_episode_folder
    from core.device import pick_device

    device = pick_device(args.device)
    args.checkpoint = _checkpoint(args)
    learner, metadata = load_learner(args.checkpoint, rule=args.rule, device=device)
    if learner.task_kind != "classification":
        return _die("adapt works with image-classification checkpoints")
    episode = load_episode_folder(args.episode, _image_spec(metadata))
    skipped = episode.provenance["skipped_files"]
    if skipped:
        # On stderr, so --json output stays one JSON document; the JSON carries the list too.
        print(f"skipped {len(skipped)} file(s) that are not images by their extension: {', '.join(skipped)}",
              file=sys.stderr)
    steps = args.steps if args.steps is not None else metadata.inner_steps.eval
    result = adapt(learner, episode, steps=steps, head_init=args.head_init, device=device)
    names = result.class_names
    rows = []
    for index, (source, guess, probs) in enumerate(zip(episode.query_sources, result.predictions, result.probabilities)):
        row = {"query": source, "predicted": names[guess], "confidence": probs[guess]}
        if result.query_labels is not None:
            row["label"] = names[result.query_labels[index]]
            row["correct"] = guess == result.query_labels[index]
        rows.append(row)
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), **result.to_dict(), "queries": rows,
                          "skipped_files": skipped}, indent=2))
        return 0
    for row in rows:
        mark = "" if "correct" not in row else ("  ok" if row["correct"] else f"  WRONG (is {row['label']})")
        print(f"{row['query']}: {row['predicted']} ({100 * row['confidence']:.1f}%){mark}")
    summary = f"rule {result.rule}, {result.steps} steps, head {result.head_init}, {result.seconds:.2f} s on {result.device}"
    if result.accuracy is not None:
        summary = f"accuracy {100 * result.accuracy:.1f}% ({sum(r['correct'] for r in rows)}/{len(rows)}); " + summary
    print(summary)
    return 0


def _checkpoint(args: argparse.Namespace) -> Path:
    """``--checkpoint``, or the shipped default named in ``assets/checkpoints/MANIFEST.json``."""
    from core import settings
    from core.checkpoint import default_checkpoint

    if args.checkpoint is not None:
        return args.checkpoint
    folder = settings.SHIPPED_CHECKPOINT_DIR
    default = default_checkpoint(folder)
    if default is None or not default.is_file():
        raise FileNotFoundError(f"no --checkpoint given and no shipped default in {folder}; pass --checkpoint PATH")
    return default


def _earlier_measurement(row: dict, source: str):
    """An earlier held-out measurement, from a JSON row (``bench/results/*.json``, the packaging cache)."""
    from core.packaging import EarlierMeasurement

    try:
        return EarlierMeasurement(
            rule=str(row["rule"]), way=int(row["way"]), shot=int(row["shot"]), head_init=str(row["head_init"]),
            episodes=int(row["episodes"]), accuracy=float(row["accuracy"]), ci95=float(row["ci95"]),
            seconds=float(row["seconds"]), source=source,
            protocol=str(row.get("protocol", "any-classes")),  # rows written before the within-alphabet protocol
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{source}: a measurement row lacks or mistypes {error}: {row}") from None


def cmd_package(args: argparse.Namespace) -> int:
    import dataclasses

    from core import settings
    from core.checkpoint import file_sha256, read_metadata, supported_rules
    from core.packaging import measure_heldout, package

    metadata = read_metadata(args.checkpoint)
    if metadata.training is None or metadata.training.config is None:
        return _die(f"{args.checkpoint} does not record its training config, so its held-out classes are unknown")
    reuse = []
    for path in args.reuse or []:
        for row in json.loads(Path(path).read_text()):
            if Path(row.get("checkpoint", "")).resolve() == args.checkpoint.resolve():
                reuse.append(_earlier_measurement(row, str(path)))
    # Measurements of this exact file are cached as they are made, so an interrupted run picks up where it stopped.
    cache = args.cache_dir / f"{file_sha256(args.checkpoint)[:16]}.jsonl"
    if cache.is_file():
        reuse += [_earlier_measurement(json.loads(line), str(cache))
                  for line in cache.read_text().splitlines() if line.strip()]

    def remember(row) -> None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(cache, "a") as handle:
            handle.write(json.dumps(dataclasses.asdict(row)) + "\n")

    rules = supported_rules(metadata)
    if args.measure_only:
        unknown = sorted(set(args.measure_only) - set(rules))
        if unknown:
            return _die(f"{args.checkpoint} cannot adapt with {', '.join(unknown)}; it supports {', '.join(rules)}")
        rules = [rule for rule in rules if rule in args.measure_only]
    results = measure_heldout(args.checkpoint, rules, episodes=args.episodes, reuse=reuse, on_row=remember,
                              log=lambda line: print(line, file=sys.stderr, flush=True))
    if args.measure_only:
        # The rows are in the cache, where a later package run of this file finds them.
        print(json.dumps({"cache": str(cache), "results": [dataclasses.asdict(row) for row in results]}, indent=2))
        return 0
    out = package(args.checkpoint, args.out or settings.SHIPPED_CHECKPOINT_DIR, args.name, args.title, results,
                  half_precision=args.half, default=args.default, notes=args.notes or "")
    rows = [dataclasses.asdict(row) for row in results]
    print(json.dumps({"file": str(out), "bytes": out.stat().st_size, "results": rows}, indent=2))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from core.checkpoint import read_metadata, supported_rules
    from core.checkpoint.learner_io import proximal_lambda_of

    metadata = read_metadata(_checkpoint(args))
    if args.json:
        print(json.dumps(metadata.verbatim(), indent=2))
        return 0
    training = metadata.training
    validation = metadata.validation
    print(f"name:      {metadata.name}")
    print(f"backbone:  {metadata.backbone.config}")
    print(f"rule:      {metadata.rule.config} (supports: {', '.join(supported_rules(metadata))})")
    print(f"head:      {metadata.head_init}")
    print(f"image:     {None if metadata.image is None else metadata.image.to_dict()}")
    lam = proximal_lambda_of(metadata)
    inner_problem = "support loss" if lam == 0 else f"support loss + {lam:g}/2 ||y - x||^2 (proximal)"
    print(f"inner:     {metadata.inner_steps.eval} steps at evaluation ({metadata.inner_steps.train} in training), "
          f"{inner_problem}")
    if training is not None:
        print(f"trained:   {training.tasks_seen} tasks, {training.wall_seconds} s on {training.device}"
              f"{'' if training.estimator is None else f', meta-gradient {training.estimator}'}")
        print(f"command:   {training.command}")
        if training.tuning is not None:
            print(f"tuning:    trial {training.tuning.trial} of study {training.tuning.study!r}, "
                  f"{json.dumps(dict(training.tuning.params))}")
    if validation is not None:
        print(f"validation: {validation.metric} {validation.mean:.4f} ± {validation.ci95 or 0:.4f}")
    return 0


def cmd_inspect_rule(args: argparse.Namespace) -> int:
    """How much a rule's generated alpha/beta depend on the episode (ALFA's claim: per task, not only per step)."""
    import dataclasses

    import numpy as np

    from core.checkpoint import read_metadata
    from core.device import pick_device
    from core.rule_spread import rule_spread

    path = _checkpoint(args)
    metadata = read_metadata(path)
    rule = args.rule or metadata.rule.name
    steps = args.steps if args.steps is not None else metadata.inner_steps.eval
    way = args.way or metadata.trained_way
    if way is None:
        raise ValueError("this checkpoint does not record its class count; pass --way")
    spread = rule_spread(path, rule, steps, way, args.shot, episodes=args.episodes, seed=args.seed,
                         head_init=args.head_init, device=pick_device(args.device))
    rows = []
    for layer in spread.layers:
        relative = layer.alpha.relative_spread()  # per step; a fixed schedule gives 0 at every step
        rows.append({"layer": layer.layer, "alpha_relative_spread_median": float(np.median(relative)),
                     "alpha_relative_spread_max": float(max(relative)), "beta_std_max": float(max(layer.beta.std)),
                     "alpha_episode_share": layer.alpha_shares.episode, "alpha_step_share": layer.alpha_shares.step,
                     "beta_episode_share": layer.beta_shares.episode})
    if args.json:
        print(json.dumps({**{k: v for k, v in dataclasses.asdict(spread).items() if k != "layers"},
                          "layers": rows, "spread": spread.to_dict()["layers"]}, indent=2))
        return 0

    def share(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.3g}%"

    print(f"{path.name}, rule {rule}: {spread.episodes} held-out {way}-way {args.shot}-shot episodes ({spread.data}), "
          f"{steps} steps, head {spread.head_init}")
    print("alpha spread across episodes = std / |mean| per step (median, max); share of the variation explained by")
    print("the episode and by the step (episodes x steps table); beta: largest std across episodes")
    print(f"{'layer':<28} {'median':>9} {'max':>9} {'episode':>8} {'step':>8} {'beta std':>9} {'beta ep.':>8}")
    for row in rows:
        print(f"{row['layer']:<28} {row['alpha_relative_spread_median']:9.2e} {row['alpha_relative_spread_max']:9.2e} "
              f"{share(row['alpha_episode_share']):>8} {share(row['alpha_step_share']):>8} "
              f"{row['beta_std_max']:9.2e} {share(row['beta_episode_share']):>8}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from core.tune import TuneRequest, run_tune, ship_command

    request = TuneRequest(
        config_path=str(args.config), trials=args.trials, study_name=args.study, storage_url=args.storage,
        sampler=args.sampler, pruner=args.pruner, timeout_s=args.timeout, device=args.device, worker=args.worker,
    )
    result = run_tune(request)
    print(f"study {result.study_name!r} in {result.storage_url}: {result.n_complete} complete, "
          f"{result.n_pruned} pruned, {result.n_failed} failed")
    names = sorted({name for trial in result.trials for name in trial.params})
    print(f"{'trial':>5} {'state':<8} {'value':>12} {'at iter':>7}  " + "  ".join(names))
    for trial in result.trials:
        value = "" if trial.value is None else f"{trial.value:.6g}"
        at = "" if trial.last_iteration is None else str(trial.last_iteration)
        params = "  ".join(f"{trial.params[name]:.4g}" if isinstance(trial.params.get(name), float)
                           else str(trial.params.get(name, "")) for name in names)
        print(f"{trial.number:>5} {trial.state:<8} {value:>12} {at:>7}  {params}" + (f"  ({trial.error})" if trial.error else ""))
    if result.best_trial is None:
        print("no trial completed yet")
        return 0
    print(f"best: trial {result.best_trial}, value {result.best_value:.6g}, {json.dumps(result.best_params)}")
    print(f"checkpoint: {result.best_checkpoint}")
    print(f"next: {ship_command(result.best_checkpoint, result.study_name)}")
    return 0


def _hand_over_to_jobs(argv: list[str]) -> int:
    """Replace this process by ``python -m core.jobs ARGV``. ``core.jobs`` runs this module's functions (a job is
    the command's own work), so it sits above ``core.cli``; importing it from here would close an import cycle."""
    os.execv(sys.executable, [sys.executable, "-m", "core.jobs", *argv])
    return 0  # not reached: execv does not return


def cmd_worker(args: argparse.Namespace) -> int:
    argv = ["worker", *(["--workers", str(args.workers)] if args.workers else []), *(["--embedded"] if args.embedded else [])]
    return _hand_over_to_jobs(argv)


def cmd_jobs(args: argparse.Namespace) -> int:
    return _hand_over_to_jobs([args.action, *([str(args.job)] if args.job is not None else []), "--limit", str(args.limit)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Few-shot meta-learning with learned inner-loop rules")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train", help="meta-train from a TOML config (under torchrun: the meta-batch split across the processes)"
    )
    train.add_argument("--config", required=True, type=Path)
    train.add_argument("--resume", action="store_true", help="continue the run in the config's output folder")
    train.add_argument("--output-dir", help="override the config's output_dir")
    train.add_argument("--iterations", type=int, help="override meta.iterations")
    train.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(func=cmd_train)

    pretrain = sub.add_parser("pretrain", help="only the supervised pre-training stage of a config (resumable)")
    pretrain.add_argument("--config", required=True, type=Path)
    pretrain.add_argument("--output-dir", help="override the config's output_dir")
    pretrain.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    pretrain.add_argument("--no-progress", action="store_true")
    pretrain.set_defaults(func=cmd_pretrain)

    def common(p: argparse.ArgumentParser) -> None:
        from core.objectives import HEAD_INITS
        from core.rules import registered_rule_names

        p.add_argument("--checkpoint", type=Path, help="default: the shipped default checkpoint")
        p.add_argument("--rule", choices=registered_rule_names(),
                       help="inner-loop rule (default: the one the checkpoint was trained with)")
        p.add_argument("--steps", type=int, help="inner steps (default: the checkpoint's evaluation steps)")
        p.add_argument("--head-init", choices=HEAD_INITS, help="classifier head set-up")
        p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
        p.add_argument("--json", action="store_true", help="print JSON")

    evaluate = sub.add_parser("evaluate", help="many-episode evaluation: mean and 95%% CI")
    common(evaluate)
    evaluate.add_argument("--episodes", type=int, default=600)
    evaluate.add_argument("--way", type=int)
    evaluate.add_argument("--shot", type=int)
    evaluate.add_argument("--query", type=int, default=15)
    evaluate.add_argument("--seed", type=int, default=1)
    evaluate.add_argument("--split", help="train/val/test of the checkpoint's data (default test), or a split folder with --folder")
    evaluate.add_argument("--folder", help="evaluate on a folder-per-class tree instead of the checkpoint's data")
    evaluate.add_argument("--data-root", help="where the checkpoint's dataset lives on this machine")
    evaluate.add_argument("--within-alphabet", action="store_true",
                          help="Omniglot: all classes of an episode from one alphabet (Lake et al.'s harder protocol)")
    evaluate.add_argument("--tta-copies", type=int, default=0, metavar="N",
                          help="test-time augmentation: add N randomly distorted copies of every support image")
    evaluate.add_argument("--tta-ranges", metavar="TABLE",
                          help="the distortions' ranges as a TOML inline table (default: the checkpoint's training "
                               "augmentation), e.g. '{ rotation = 10, shear = 10, scale = [0.85, 1.15], translate = 0.1 }'")
    evaluate.set_defaults(func=cmd_evaluate)

    adapt = sub.add_parser("adapt", help="adapt to an episode folder (support/<label>/*, query/...) and classify its queries")
    common(adapt)
    adapt.add_argument("--episode", required=True, type=Path)
    adapt.set_defaults(func=cmd_adapt)

    inspect = sub.add_parser("inspect-rule", help="how much a rule's alpha/beta vary across held-out episodes")
    common(inspect)
    inspect.add_argument("--episodes", type=int, default=20)
    inspect.add_argument("--way", type=int, help="default: the class count the checkpoint was trained with")
    inspect.add_argument("--shot", type=int, default=1)
    inspect.add_argument("--seed", type=int, default=0)
    inspect.set_defaults(func=cmd_inspect_rule)

    info = sub.add_parser("info", help="show a checkpoint's metadata")
    info.add_argument("--checkpoint", type=Path, help="default: the shipped default checkpoint")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)

    tune = sub.add_parser("tune", help="tune a config's [tune] search space with Optuna (one trial = one training)")
    tune.add_argument("--config", required=True, type=Path, help="a training config with a [tune] section")
    tune.add_argument("--trials", required=True, type=int, help="trials to run now (a continued study adds them)")
    tune.add_argument("--study", help="study name (default: the config's name); an existing one is continued")
    tune.add_argument("--storage", help="Optuna storage URL (default: the run store's database, FEWSHOT_DATABASE_URL)")
    tune.add_argument("--sampler", choices=("tpe", "cmaes", "random"), default="tpe")
    tune.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median")
    tune.add_argument("--timeout", type=float, help="start no new trial after this many seconds")
    tune.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    tune.add_argument("--worker", type=int, default=0,
                      help="this worker's index (0, 1, ...) when several processes or hosts share the study: "
                           "seeds its sampler apart from the others'")
    tune.set_defaults(func=cmd_tune)
    pack = sub.add_parser("package", help="measure a trained checkpoint on its held-out classes and ship it")
    pack.add_argument("--checkpoint", required=True, type=Path)
    pack.add_argument("--name", required=True, help="file name (without .safetensors) under --out")
    pack.add_argument("--title", required=True, help="one line shown in the dashboard and the manifest")
    pack.add_argument("--out", type=Path, help="default: assets/checkpoints")
    pack.add_argument("--episodes", type=int, default=600)
    pack.add_argument("--half", action="store_true", help="store float tensors in half precision")
    pack.add_argument("--default", action="store_true", help="make it the default checkpoint")
    pack.add_argument("--notes", help="why this recipe (width, input size...), kept in the metadata")
    pack.add_argument("--reuse", action="append", type=Path,
                      help="JSON rows of earlier measurements of this file (bench/results/omniglot_table.json)")
    pack.add_argument("--measure-only", action="append", metavar="RULE",
                      help="measure only this rule's rows into the cache and stop without packaging (repeatable); "
                           "one process per rule measures a file's rules in parallel")
    pack.add_argument("--cache-dir", type=Path, default=Path("runs") / "heldout",
                      help="where measurements are cached per checkpoint hash (default runs/heldout)")
    pack.set_defaults(func=cmd_package)

    worker = sub.add_parser("worker", help="serve the background-job queue (evaluate, train, tune jobs)")
    worker.add_argument("--workers", type=int, help="jobs run at once (default: $FEWSHOT_JOB_WORKERS, 2)")
    worker.add_argument("--embedded", action="store_true",
                        help="the dashboard's own worker: exit at once if another one serves the queue")
    worker.set_defaults(func=cmd_worker)

    jobs = sub.add_parser("jobs", help="list background jobs, or cancel one")
    jobs.add_argument("action", choices=("list", "cancel"), nargs="?", default="list")
    jobs.add_argument("job", type=int, nargs="?", help="the job id (cancel)")
    jobs.add_argument("--limit", type=int, default=30)
    jobs.set_defaults(func=cmd_jobs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from core.checkpoint import CheckpointError
    from core.config import ConfigError
    from core.data.images import ImageError

    try:
        return args.func(args)
    except (ConfigError, CheckpointError, ImageError, FileNotFoundError, FileExistsError, ValueError) as error:
        # Notes say where it happened (core.distributed: which training process of several met it).
        return _die(" ".join([str(error), *getattr(error, "__notes__", [])]))


if __name__ == "__main__":
    sys.exit(main())
