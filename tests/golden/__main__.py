"""``python -m tests.golden``: record the golden predictions of the shipped checkpoints (see ``tests.golden``).

``--add FILE ...`` records only the cases of newly shipped checkpoints (file names in ``assets/checkpoints``) and
keeps every recorded tensor of the others as it is: their goldens stay those recorded before any later change.
"""

from __future__ import annotations

import argparse
import subprocess

from safetensors import safe_open
from safetensors.torch import save_file

from core.settings import omniglot_root
from tests.golden import EPISODES, GOLDEN_FILE, QUERIES_PER_CLASS, SEED, cases, predict


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.golden", description=__doc__)
    parser.add_argument("--add", nargs="+", metavar="FILE", help="record only these checkpoints' cases")
    args = parser.parse_args(argv)
    tensors = {}
    metadata = {}
    if args.add:
        with safe_open(str(GOLDEN_FILE), framework="pt") as golden:
            metadata = dict(golden.metadata())
            names = golden.keys()  # a safe_open handle is not iterable
            tensors = {key: golden.get_tensor(key) for key in names if key.split("/")[0] not in args.add}
    root = omniglot_root()
    recorded = 0
    for case, path, _metadata in cases():
        if args.add and path.name not in args.add:
            continue
        predictions, probabilities = predict(case, path, _metadata, root)
        tensors[f"{case.key}/predictions"] = predictions
        tensors[f"{case.key}/probabilities"] = probabilities
        recorded += 1
        print(f"{case.key}: {predictions.shape[0]} episodes of {predictions.shape[1]} queries", flush=True)
    if args.add and recorded == 0:
        parser.error(f"no shipped checkpoint named {', '.join(args.add)}")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    metadata.update({"episodes": str(EPISODES), "queries_per_class": str(QUERIES_PER_CLASS), "seed": str(SEED),
                     "dtype": "float64"})
    key = "recorded_at_commit" if not args.add else f"added_at_commit:{','.join(args.add)}"
    metadata[key] = commit
    save_file(tensors, str(GOLDEN_FILE), metadata=metadata)
    print(f"wrote {GOLDEN_FILE} ({GOLDEN_FILE.stat().st_size / 1e6:.1f} MB, {len(tensors) // 2} cases)")


if __name__ == "__main__":
    main()
