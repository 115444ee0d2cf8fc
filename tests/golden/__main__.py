"""``python -m tests.golden``: record the golden predictions of the shipped checkpoints (see ``tests.golden``)."""

from __future__ import annotations

import subprocess

from safetensors.torch import save_file

from core.settings import omniglot_root
from tests.golden import EPISODES, GOLDEN_FILE, QUERIES_PER_CLASS, SEED, cases, predict


def main() -> None:
    tensors = {}
    root = omniglot_root()
    for case, path, metadata in cases():
        predictions, probabilities = predict(case, path, metadata, root)
        tensors[f"{case.key}/predictions"] = predictions
        tensors[f"{case.key}/probabilities"] = probabilities
        print(f"{case.key}: {predictions.shape[0]} episodes of {predictions.shape[1]} queries", flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    save_file(tensors, str(GOLDEN_FILE), metadata={
        "recorded_at_commit": commit, "episodes": str(EPISODES), "queries_per_class": str(QUERIES_PER_CLASS),
        "seed": str(SEED), "dtype": "float64",
    })
    print(f"wrote {GOLDEN_FILE} ({GOLDEN_FILE.stat().st_size / 1e6:.1f} MB, {len(tensors) // 2} cases)")


if __name__ == "__main__":
    main()
