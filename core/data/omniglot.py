"""Omniglot (Lake et al., 2015) read in place from its unzipped folders, with optional rotation classes."""

from __future__ import annotations

from pathlib import Path

import torch

from core import settings
from core.data.images import OMNIGLOT_SPEC, ImageSpec
from core.data.sampler import LabelledImageSet

__all__ = [
    "OMNIGLOT_ROTATIONS",
    "OMNIGLOT_SPLITS",
    "OmniglotImageSet",
    "ensure_omniglot",
    "list_alphabets",
]

# Search order matters: a character present in several splits is taken from the first one listed here.
OMNIGLOT_SPLITS: tuple[str, ...] = (
    "images_background",
    "images_evaluation",
    "images_background_small1",
    "images_background_small2",
)
OMNIGLOT_ROTATIONS: tuple[int, ...] = (0, 90, 180, 270)
# torchvision.datasets.Omniglot unpacks its downloads into <root>/omniglot-py/<split>/.
_TORCHVISION_FOLDER = "omniglot-py"


def _missing_help(root: Path) -> str:
    return (
        f"Omniglot was not found under {root}. Put the unzipped Omniglot folders there, so that images sit at "
        f"{root}/images_background/<Alphabet>/characterNN/<drawing>.png (and {root}/images_evaluation/... "
        f"for the evaluation alphabets; images_background_small1/2, or torchvision's "
        f"{root}/{_TORCHVISION_FOLDER}/ folder holding these, work too), or point the environment variable "
        f"{settings.OMNIGLOT_ROOT.name} at a folder laid out that way. To download it instead, enable download: torchvision "
        f"downloads images_background.zip and images_evaluation.zip (github.com/brendenlake/omniglot) "
        f"when the internet is reachable."
    )


def _split_dirs(root: Path) -> dict[str, Path]:
    """Split name -> folder for every known split under ``root`` or ``root/omniglot-py``."""
    found: dict[str, Path] = {}
    for split in OMNIGLOT_SPLITS:
        for base in (root, root / _TORCHVISION_FOLDER):
            if (base / split).is_dir():
                found[split] = base / split
                break
    return found


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_characters(split_dirs: dict[str, Path]) -> dict[str, Path]:
    """``Alphabet/characterNN`` -> its folder, each character taken from the first split that has it.

    The small background splits both contain Greek and Latin (identical); keying on the character rather
    than the split keeps them from turning into duplicate classes.
    """
    characters: dict[str, Path] = {}
    for split_dir in split_dirs.values():
        for alphabet_dir in _visible_dirs(split_dir):
            for character_dir in _visible_dirs(alphabet_dir):
                characters.setdefault(f"{alphabet_dir.name}/{character_dir.name}", character_dir)
    return characters


def list_alphabets(root: str | Path) -> dict[str, int]:
    """Alphabet -> number of (de-duplicated) characters found under ``root``; empty if there is no data."""
    counts: dict[str, int] = {}
    for character in _scan_characters(_split_dirs(Path(root))):
        alphabet = character.split("/", 1)[0]
        counts[alphabet] = counts.get(alphabet, 0) + 1
    return dict(sorted(counts.items()))


def ensure_omniglot(root: str | Path, download: bool) -> Path:
    """Return the folder holding the Omniglot split folders, downloading them first if allowed.

    Raises :class:`FileNotFoundError` that says where to put the data when it is absent and either
    ``download`` is false or the download fails (e.g. no internet).
    """
    root = Path(root).expanduser()
    found = _split_dirs(root)
    if found:
        return next(iter(found.values())).parent
    if not download:
        raise FileNotFoundError(_missing_help(root))
    try:
        # Imported here: torchvision.datasets is slow to import and only needed for the download.
        from torchvision.datasets import Omniglot

        for background in (True, False):
            Omniglot(str(root), background=background, download=True)
    except Exception as error:
        raise FileNotFoundError(f"{_missing_help(root)} The download failed: {error}") from error
    return root / _TORCHVISION_FOLDER


class OmniglotImageSet(LabelledImageSet):
    """Omniglot characters as classes, each with its (usually 20) drawings as items.

    Class names are ``Alphabet/characterNN``; with ``rotations`` containing 90/180/270 every character also
    yields rotated classes ``Alphabet/characterNN@rot90`` etc. (rotated counter-clockwise, as
    ``torch.rot90``), the usual way to enlarge Omniglot's class pool. ``splits``/``alphabets`` restrict
    which split folders / alphabets are used (``None``: all found). Decoded drawings are cached unrotated
    and without limit (all of Omniglot at 28x28 is about 100 MB). A class's group is its alphabet, rotated
    or not (:meth:`group_of`): within-alphabet episodes draw all their characters from one alphabet.
    """

    group_kind = "alphabet"

    def __init__(
        self,
        root: str | Path,
        alphabets: list[str] | None = None,
        splits: list[str] | None = None,
        rotations: tuple[int, ...] = (0,),
        spec: ImageSpec = OMNIGLOT_SPEC,
        name: str = "omniglot",
    ) -> None:
        super().__init__(name=name, spec=spec, cache_size=None)
        self.root = Path(root).expanduser()
        available_splits = _split_dirs(self.root)
        if not available_splits:
            raise FileNotFoundError(_missing_help(self.root))
        if splits is not None:
            unknown = [s for s in splits if s not in available_splits]
            if unknown:
                raise ValueError(
                    f"Omniglot split(s) {unknown} not found under {self.root}; "
                    f"available: {sorted(available_splits)}"
                )
            available_splits = {s: d for s, d in available_splits.items() if s in splits}

        characters = _scan_characters(available_splits)
        if alphabets is not None:
            present = {c.split("/", 1)[0] for c in characters}
            unknown = [a for a in alphabets if a not in present]
            if unknown:
                raise ValueError(
                    f"Omniglot alphabet(s) {unknown} not found under {self.root}; available: {sorted(present)}"
                )
            wanted = set(alphabets)
            characters = {c: d for c, d in characters.items() if c.split("/", 1)[0] in wanted}

        bad = [r for r in rotations if r not in OMNIGLOT_ROTATIONS]
        if bad or not rotations or len(set(rotations)) != len(rotations):
            raise ValueError(f"rotations must be distinct values from {OMNIGLOT_ROTATIONS}, got {rotations}")

        self.rotations = tuple(rotations)
        # Class name -> (drawing files, rotation in degrees).
        self._classes: dict[str, tuple[list[Path], int]] = {}
        for character in sorted(characters):
            files = sorted(p for p in characters[character].glob("*.png") if not p.name.startswith("."))
            for rotation in self.rotations:
                class_name = character if rotation == 0 else f"{character}@rot{rotation}"
                self._classes[class_name] = (files, rotation)
        self.class_names = list(self._classes)

    def num_items(self, class_name: str) -> int:
        return len(self._lookup(class_name)[0])

    def group_of(self, class_name: str) -> str:
        """The alphabet: ``Greek`` for ``Greek/character01`` and for its rotation ``Greek/character01@rot90``."""
        self._lookup(class_name)
        return class_name.split("/", 1)[0]

    def source(self, class_name: str, index: int) -> str:
        """The drawing's file path, with ``@rotNN`` appended for rotated classes."""
        files, rotation = self._lookup(class_name)
        path = str(files[index])
        return path if rotation == 0 else f"{path}@rot{rotation}"

    def load(self, class_name: str, index: int) -> torch.Tensor:
        files, rotation = self._lookup(class_name)
        # Cache keyed by file, so all rotations of a drawing share one decode.
        image = self._decode_file(str(files[index]))
        return image if rotation == 0 else torch.rot90(image, k=rotation // 90, dims=(1, 2))

    def _lookup(self, class_name: str) -> tuple[list[Path], int]:
        try:
            return self._classes[class_name]
        except KeyError:
            raise KeyError(f"{self.name!r} has no class {class_name!r}") from None
