"""The README's table of shipped checkpoints, read from their metadata (nothing is measured here).

    python bench/shipped_table.py            # markdown on stdout
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.checkpoint import read_manifest, read_metadata
from core.packaging import SETTINGS
from core.settings import SHIPPED_CHECKPOINT_DIR as SHIPPED_DIR

LABELS = {"sgd": "SGD", "alfa": "ALFA", "alfa_random": "ALFA", "per_step": "per-step rates", "meta_sgd": "Meta-SGD", "anil": "ANIL"}


def main() -> int:
    manifest = read_manifest(SHIPPED_DIR)
    header = ["file", "adapted with"] + [setting.label for setting in SETTINGS] + ["meta-training"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    names = sorted(manifest.checkpoints, key=lambda n: (not n.startswith("resnet12"), n))
    for name in names:
        metadata = read_metadata(SHIPPED_DIR / name)
        training = metadata.training
        pre = training.pretraining
        how = f"{training.tasks_seen:,} tasks, {training.wall_seconds / 60:.0f} min"
        if pre:
            how += f" + pre-training {pre.epochs} epochs, {pre.wall_seconds / 60:.0f} min"
        by_rule: dict[str, dict[str, str]] = {}
        for row in metadata.heldout.results:
            cell = f"{100 * row.accuracy:.2f} ± {100 * row.ci95:.2f}"
            if row.head_init != "learned":
                cell += f" ({row.head_init})"
            by_rule.setdefault(row.rule, {})[row.setting] = cell
        for index, (rule, cells) in enumerate(by_rule.items()):
            default = " (default)" if name == manifest.default and index == 0 else ""
            first = f"`{name}`{default}" if index == 0 else ""
            values = [cells.get(setting.label, "—") for setting in SETTINGS]
            print("| " + " | ".join([first, LABELS.get(rule, rule), *values, how if index == 0 else ""]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
