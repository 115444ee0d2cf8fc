"""What shipping a checkpoint in half precision would cost: the same held-out episodes through the float32 file
and through a float16 copy of it (what ``python -m core package --half`` writes; loading upcasts to float32).

Prints, per checkpoint and setting, both accuracies and how many query predictions changed, and writes JSON.

    python bench/half_precision.py                                   # every shipped checkpoint, 100 episodes
    python bench/half_precision.py --checkpoints assets/checkpoints/conv4_maml.safetensors --episodes 600
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def compare(path: Path, episodes: int, steps: int | None = None) -> list[dict]:
    import numpy as np

    from core.adapt import adapt, default_head_init
    from core.checkpoint import load_learner, read_metadata
    from core.checkpoint.format import read_header, read_tensors, write_file
    from core.config import config_from_dict
    from core.data.factory import build_image_set
    from core.data.sampler import EpisodeSampler
    from core.packaging import EVAL_SEED, N_QUERY, SETTINGS

    metadata = read_metadata(path)
    steps = steps or metadata.inner_steps.eval
    test_set = build_image_set(config_from_dict(dict(metadata.training.config)), "test")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        import torch

        half_path = write_file(Path(folder) / "half.safetensors", read_tensors(path), read_header(path),
                               dtype=torch.float16)
        full, _ = load_learner(path)
        half, _ = load_learner(half_path)
        for setting in SETTINGS:
            way, shot = setting.way, setting.shot
            head = default_head_init(full, way)
            sampler = EpisodeSampler(test_set, way, shot, N_QUERY, seed=EVAL_SEED, within_group=setting.within_group)
            full_acc, half_acc, changed, total = [], [], 0, 0
            for index in range(episodes):
                episode = sampler.episode(index)
                a = adapt(full, episode, steps=steps, head_init=head)
                b = adapt(half, episode, steps=steps, head_init=head)
                full_acc.append(a.accuracy)
                half_acc.append(b.accuracy)
                changed += sum(p != q for p, q in zip(a.predictions, b.predictions))
                total += len(a.predictions)
            row = {"checkpoint": path.name, "rule": full.rule.name, "way": way, "shot": shot,
                   "protocol": setting.protocol, "head_init": head,
                   "episodes": episodes, "float32": float(np.mean(full_acc)), "float16": float(np.mean(half_acc)),
                   "changed_predictions": changed, "predictions": total,
                   "float32_bytes": path.stat().st_size, "float16_bytes": half_path.stat().st_size}
            print(f"{path.name:34s} {setting.label} ({head:9s}): float32 {100 * row['float32']:6.2f} %, "
                  f"float16 {100 * row['float16']:6.2f} %, {changed}/{total} predictions changed", flush=True)
            rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="*", type=Path,
                        help="default: every file in assets/checkpoints/MANIFEST.json")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--out", default="bench/results/half_precision.json")
    args = parser.parse_args()
    from core.checkpoint import read_manifest
    from core.settings import SHIPPED_CHECKPOINT_DIR as folder

    paths = args.checkpoints or [folder / name for name in sorted(read_manifest(folder).checkpoints)]
    rows = [row for path in paths for row in compare(Path(path), args.episodes)]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"results": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
