"""Record the adaptivity figures (ALFA's Figure 3: alpha/beta over held-out episodes) in every shipped checkpoint
whose rule is meta-learned, rewriting their headers only (``core.packaging.record_adaptivity``; the held-out
accuracies are not measured again, the tensors keep their bytes, the manifest gets the new hashes).

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python bench/record_adaptivity.py [FOLDER] [--only FILE ...]
    # default folder: assets/checkpoints; --only: just these files (a newly shipped one), the others untouched
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.checkpoint import read_manifest, read_metadata
from core.packaging import adaptivity_protocol, record_adaptivity
from core.settings import SHIPPED_CHECKPOINT_DIR


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/record_adaptivity.py")
    parser.add_argument("folder", nargs="?", type=Path, default=SHIPPED_CHECKPOINT_DIR)
    parser.add_argument("--only", nargs="+", metavar="FILE", help="record only these files of the folder")
    args = parser.parse_args(argv)
    folder = args.folder
    names = sorted(read_manifest(folder).checkpoints)
    if args.only:
        missing = sorted(set(args.only) - set(names))
        if missing:
            parser.error(f"not in {folder / 'MANIFEST.json'}: {', '.join(missing)}")
        names = [name for name in names if name in args.only]
    for name in names:
        path = folder / name
        protocol = adaptivity_protocol(read_metadata(path))
        if protocol is None:
            print(f"{name}: its rule has no meta-learned parameters; nothing to record", flush=True)
            continue
        print(f"{name}: {protocol.rule}, {protocol.described}…", flush=True)
        spread = record_adaptivity(path)
        share = spread.largest_alpha_episode_share()
        print(f"{name}: recorded; largest std/|mean| of alpha {spread.largest_relative_alpha_spread():.3g}, "
              f"largest share of alpha's variation explained by the episode "
              f"{'-' if share is None else f'{share:.3g}'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
