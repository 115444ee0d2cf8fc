"""Record the adaptivity figures (ALFA's Figure 3: alpha/beta over held-out episodes) in every shipped checkpoint
whose rule is meta-learned, rewriting their headers only (``core.packaging.record_adaptivity``; the held-out
accuracies are not measured again, the tensors keep their bytes, the manifest gets the new hashes).

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python bench/record_adaptivity.py [FOLDER]   # default: assets/checkpoints
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.checkpoint import read_manifest, read_metadata
from core.packaging import adaptivity_protocol, record_adaptivity
from core.settings import SHIPPED_CHECKPOINT_DIR


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else SHIPPED_CHECKPOINT_DIR
    for name in sorted(read_manifest(folder).checkpoints):
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
