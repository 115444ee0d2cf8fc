"""Measure what the shipped checkpoints' metadata lacks: every setting of ``core.packaging.SETTINGS`` for every rule
the file already records results of (or ``--rule``, repeatable, any rule it supports), under the shipped protocol, and record each result in the file as soon as it is measured
(``core.packaging.add_heldout_results``: the header is rewritten, the tensors stay, the manifest gets the new hash).

Run it after a setting or a rule is added to the tables; an interrupted run continues where it stopped.

    OMP_NUM_THREADS=1 python bench/add_heldout.py [--checkpoint F ...] [--rule R ...] [--episodes 600]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.adapt import default_head_init
from core.checkpoint import load_learner, read_manifest, read_metadata, supported_rules
from core.packaging import SETTINGS, add_heldout_results, measure_heldout
from core.settings import SHIPPED_CHECKPOINT_DIR


def missing(path: Path, episodes: int, rules: list[str] | None) -> dict[str, list]:
    """Per rule, the settings of SETTINGS the file records no result of (with the head it would use)."""
    metadata = read_metadata(path)
    recorded = {(row.rule, row.setting, row.head_init, row.episodes) for row in metadata.heldout.results}
    wanted: dict[str, list] = {}
    chosen = rules or list(dict.fromkeys(row.rule for row in metadata.heldout.results))
    for rule in [rule for rule in chosen if rule in supported_rules(metadata)]:
        learner, _ = load_learner(path, rule=rule)
        for setting in SETTINGS:
            if (rule, setting.label, default_head_init(learner, setting.way), episodes) not in recorded:
                wanted.setdefault(rule, []).append(setting)
    return wanted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", type=Path, help="default: every shipped checkpoint")
    parser.add_argument("--rule", action="append", help="default: the rules the file records results of")
    parser.add_argument("--episodes", type=int, default=600)
    args = parser.parse_args()
    paths = args.checkpoint or [SHIPPED_CHECKPOINT_DIR / name for name in read_manifest(SHIPPED_CHECKPOINT_DIR).checkpoints]
    for path in paths:
        for rule, settings in missing(path, args.episodes, args.rule).items():
            measure_heldout(path, [rule], episodes=args.episodes, settings=tuple(settings),
                            on_row=lambda row, path=path: add_heldout_results(path, [row]),
                            log=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
