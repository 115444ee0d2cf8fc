"""ANIL (head-only inner loop) on the shipped MAML checkpoints, under the protocol of every shipped figure.

Held-out alphabets of each checkpoint, 5-way 1-shot, 5-way 5-shot and 20-way 1-shot, 600 episodes, 15 queries per
class, episode seed 12345, the checkpoint's evaluation inner steps and default head (``core.packaging``). Each row is
appended to ``bench/results/anil_heldout.jsonl`` as soon as it is measured, and rows already there are not measured
again, so an interrupted run continues where it stopped. The table puts each checkpoint's shipped SGD figures (read
from its metadata) beside ANIL's.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python bench/anil_table.py     # measure what is missing, print the table
    python bench/anil_table.py --table                                  # only print the table from the results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from core.checkpoint import read_metadata
from core.packaging import SETTINGS, EarlierMeasurement, measure_heldout
from core.rules import rule_label
from core.settings import SHIPPED_CHECKPOINT_DIR

CHECKPOINTS = ("conv4_maml.safetensors", "resnet12_maml.safetensors")
RULE = "anil"
BASELINE = "sgd"
RESULTS = Path(__file__).resolve().parent / "results" / "anil_heldout.jsonl"


def measured() -> list[dict]:
    if not RESULTS.is_file():
        return []
    return [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]


def measure(episodes: int) -> None:
    torch.set_num_threads(1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for name in CHECKPOINTS:
        earlier = [
            EarlierMeasurement(row["rule"], row["way"], row["shot"], row["head_init"], row["episodes"], row["accuracy"],
                               row["ci95"], row["seconds"], str(RESULTS))
            for row in measured() if row["checkpoint"] == name
        ]

        def remember(result, name: str = name) -> None:
            row = {"checkpoint": name, **dataclasses.asdict(result), "threads": torch.get_num_threads(),
                   "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            with open(RESULTS, "a") as handle:
                handle.write(json.dumps(row) + "\n")

        measure_heldout(SHIPPED_CHECKPOINT_DIR / name, [RULE], episodes=episodes, reuse=earlier, on_row=remember,
                        log=lambda line: print(line, file=sys.stderr, flush=True))


def _cell(accuracy: float, ci95: float, head_init: str) -> str:
    cell = f"{100 * accuracy:.2f} ± {100 * ci95:.2f}"
    return cell if head_init == "learned" else f"{cell} ({head_init})"


def table(episodes: int) -> str:
    header = ["file", "adapted with", *[setting.label for setting in SETTINGS], "seconds (600 episodes, 1 thread)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = measured()
    for name in CHECKPOINTS:
        shipped = {r.setting: r for r in read_metadata(SHIPPED_CHECKPOINT_DIR / name).heldout.results
                   if r.rule == BASELINE}
        ours = {f"{r['way']}-way {r['shot']}-shot" + ("" if r.get("protocol", "any-classes") == "any-classes"
                                                       else f" {r['protocol']}"): r
                for r in rows if r["checkpoint"] == name and r["rule"] == RULE and r["episodes"] == episodes}
        baseline = [_cell(shipped[s].accuracy, shipped[s].ci95, shipped[s].head_init) if s in shipped else "—"
                    for s in (setting.label for setting in SETTINGS)]
        anil = [_cell(ours[s]["accuracy"], ours[s]["ci95"], ours[s]["head_init"]) if s in ours else "—"
                for s in (setting.label for setting in SETTINGS)]
        seconds = " / ".join(f"{ours[s]['seconds']:.0f}" if s in ours else "—" for s in (x.label for x in SETTINGS))
        lines.append("| " + " | ".join([f"`{name}`", rule_label(BASELINE), *baseline, "(shipped figure)"]) + " |")
        lines.append("| " + " | ".join(["", rule_label(RULE), *anil, seconds]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--table", action="store_true", help="only print the table from the stored results")
    args = parser.parse_args(argv)
    if not args.table:
        measure(args.episodes)
    print(table(args.episodes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
