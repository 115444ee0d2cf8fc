"""MNIST-1D (Greydanus and Kobak, "Scaling down deep learning with MNIST-1D", ICML 2024) as a few-shot benchmark,
the setting of the revised FO-B-MAML paper (Chayti and Jaggi, "A new first-order meta-learning algorithm with
convergence guarantees"), generated locally with the ``mnist1d`` package and never downloaded.

The protocol (``data.kind = "mnist1d"``, ``train = ["train"]``, ``val = ["val"]``, ``test = ["test"]``):

- the data: ``mnist1d.data.make_dataset`` with the package's default arguments (templates of length 12, padding,
  shear, scale, translation, correlated and iid noise, final length 40, the whole set centred to mean 0 and scaled
  to standard deviation 1 by the package) except ``num_samples = 10 * samples_per_class`` (1000 per digit by
  default: the package's 5000 leave too few examples per held-out class for a 200 + 800 split) and
  ``train_split = 1`` (the splits below replace the package's); generation seed ``MNIST1D_GENERATION_SEED``
  (the package's 42). ``get_dataset`` is never called: it downloads a pickle.
- classes: digits 0-4 meta-train (``train``), digits 5-9 are held out. The held-out digits' samples are split, each
  digit's in the order the generator shuffled them: the first ``VALIDATION_FRACTION`` (a fifth, 200 of 1000) are
  ``val`` (model selection during meta-training), the rest ``test`` (the reported accuracies). Validation and test
  share their classes, never a sample; no held-out digit is ever seen in meta-training.
- episodes: :class:`core.data.sampler.EpisodeSampler` over a split, so task ``index`` is a pure function of
  ``(seed, index)``; N-way K-shot with labels ``0..N-1`` given to the classes in the order drawn, which permutes the
  labels per episode (5-way on five digits: the same digits every episode, a fresh label permutation each time).
- inputs: each signal as a ``[1, 40]`` float32 tensor, one channel of length 40, for a 1-D network
  (``models.backbones.conv1d``); the configs record it as ``channels = 1`` and ``image_size = 40``.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

import numpy as np
import torch

from core.data.images import ImageSpec
from core.data.sampler import LabelledImageSet

__all__ = [
    "MNIST1D_GENERATION_SEED",
    "MNIST1D_LENGTH",
    "MNIST1D_SPLITS",
    "MNIST1DSet",
    "Mnist1dSignals",
    "generate_mnist1d",
]

MNIST1D_LENGTH = 40  # the package's final_seq_length
MNIST1D_GENERATION_SEED = 42  # the package's default seed
SAMPLES_PER_CLASS = 1000
VALIDATION_FRACTION = 0.2
META_TRAIN_DIGITS = (0, 1, 2, 3, 4)
HELD_OUT_DIGITS = (5, 6, 7, 8, 9)
MNIST1D_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Mnist1dSignals:
    """The generated set: ``signals`` ``[n, 40]`` float32 and ``digits`` ``[n]`` int64, in the generator's order."""

    signals: np.ndarray
    digits: np.ndarray
    seed: int
    samples_per_class: int


@functools.lru_cache(maxsize=4)
def generate_mnist1d(seed: int = MNIST1D_GENERATION_SEED, samples_per_class: int = SAMPLES_PER_CLASS) -> Mnist1dSignals:
    """MNIST-1D generated here by ``mnist1d.data.make_dataset`` (no network access), ``samples_per_class`` per digit.

    The package seeds Python's and NumPy's global generators; their states are restored afterwards so that
    generating the data does not change the random numbers the rest of the process draws. Cached per process.
    """
    if samples_per_class < 1:
        raise ValueError(f"samples_per_class must be at least 1, got {samples_per_class}")
    from mnist1d.data import get_dataset_args, make_dataset  # imports matplotlib: only when data is generated

    arguments = get_dataset_args()
    arguments.num_samples = 10 * samples_per_class
    arguments.train_split = 1.0
    arguments.seed = int(seed)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        generated = make_dataset(arguments)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    signals = np.asarray(generated["x"], dtype=np.float32)
    digits = np.asarray(generated["y"], dtype=np.int64)
    if signals.shape != (10 * samples_per_class, MNIST1D_LENGTH):
        raise RuntimeError(
            f"mnist1d generated signals of shape {signals.shape}, expected {(10 * samples_per_class, MNIST1D_LENGTH)}"
        )
    signals.setflags(write=False)
    digits.setflags(write=False)
    return Mnist1dSignals(signals, digits, int(seed), samples_per_class)


class MNIST1DSet(LabelledImageSet):
    """One split (``train`` / ``val`` / ``test``) of the MNIST-1D few-shot protocol (module docstring), addressed as
    ``(digit name, index)`` like an image set, each item a ``[1, 40]`` signal."""

    def __init__(
        self,
        split: str,
        seed: int = MNIST1D_GENERATION_SEED,
        samples_per_class: int = SAMPLES_PER_CLASS,
    ) -> None:
        if split not in MNIST1D_SPLITS:
            raise ValueError(f"MNIST-1D split must be one of {', '.join(MNIST1D_SPLITS)}, not {split!r}")
        super().__init__(
            name=f"mnist1d-{split}", spec=ImageSpec(channels=1, size=MNIST1D_LENGTH, invert=False), cache_size=0
        )
        data = generate_mnist1d(seed, samples_per_class)
        digits = META_TRAIN_DIGITS if split == "train" else HELD_OUT_DIGITS
        validation_count = round(VALIDATION_FRACTION * samples_per_class)
        self._rows: dict[str, np.ndarray] = {}
        for digit in digits:
            rows = np.flatnonzero(data.digits == digit)
            if split == "val":
                rows = rows[:validation_count]
            elif split == "test":
                rows = rows[validation_count:]
            self._rows[str(digit)] = rows
        self._signals = torch.from_numpy(data.signals.copy()).unsqueeze(1)  # [n, 1, 40]
        self.split = split
        self.seed = data.seed
        self.class_names = sorted(self._rows)

    def num_items(self, class_name: str) -> int:
        return len(self._rows[class_name])

    def source(self, class_name: str, index: int) -> str:
        """``mnist1d:<seed>:<row>``: the signal's row in the generated set (``digit`` ``class_name``)."""
        return f"mnist1d:{self.seed}:{int(self._rows[class_name][index])}"

    def load(self, class_name: str, index: int) -> torch.Tensor:
        """Signal ``index`` of digit ``class_name``, ``[1, 40]`` float32 (shared: do not modify in place)."""
        return self._signals[int(self._rows[class_name][index])]
