"""Image sets stored as plain folders or as the miniImageNet CSV split, and user-made episode folders."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from core.data.images import MINIIMAGENET_SPEC, ImageError, ImageSpec, decode_image
from core.data.sampler import LabelledImageSet
from core.data.task import Task

__all__ = [
    "IMAGE_EXTENSIONS",
    "FolderImageSet",
    "MiniImageNetCSVImageSet",
    "list_image_files",
    "list_skipped_files",
    "load_episode_folder",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
# Bounds memory for large sets (4096 RGB 84x84 tensors are about 350 MB) while still helping repeated reads.
DEFAULT_CACHE_SIZE = 4096


def _is_hidden(path: Path) -> bool:
    # Dot-files include macOS "._name" resource forks and ".DS_Store", which are never images.
    return path.name.startswith(".")


def list_image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (by extension, case-insensitive), hidden files skipped, sorted."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not _is_hidden(p) and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def list_skipped_files(folder: Path) -> list[Path]:
    """Files directly in ``folder`` that :func:`list_image_files` leaves out for their extension (e.g. ``.svg``),
    hidden files excepted, sorted: readers report them so nothing is dropped without a word."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not _is_hidden(p) and p.suffix.lower() not in IMAGE_EXTENSIONS
    )


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not _is_hidden(p))


class _FileListImageSet(LabelledImageSet):
    """An image set whose items are files listed per class in ``self._files``."""

    _files: dict[str, list[Path]]

    def num_items(self, class_name: str) -> int:
        return len(self._class_files(class_name))

    def source(self, class_name: str, index: int) -> str:
        return str(self._class_files(class_name)[index])

    def _class_files(self, class_name: str) -> list[Path]:
        try:
            return self._files[class_name]
        except KeyError:
            raise KeyError(f"{self.name!r} has no class {class_name!r}") from None


class FolderImageSet(_FileListImageSet):
    """One folder per class: ``<root>/<split>/<class>/<image>`` (or ``<root>/<class>/<image>`` without split).

    Fits miniImageNet, tieredImageNet, CUB and the like once arranged per class. Class names are the folder
    names, sorted; images are sorted by file name.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None,
        spec: ImageSpec,
        name: str | None = None,
        cache_size: int | None = DEFAULT_CACHE_SIZE,
    ) -> None:
        root = Path(root).expanduser()
        base = root if split is None else root / split
        default_name = root.name if split is None else f"{root.name}/{split}"
        super().__init__(name=name or default_name, spec=spec, cache_size=cache_size)
        if not base.is_dir():
            raise FileNotFoundError(f"image folder {base} does not exist")
        self.root = base
        class_dirs = _subfolders(base)
        if not class_dirs:
            raise ValueError(f"{base} has no class folders; expected {base}/<class>/<image files>")
        self._files: dict[str, list[Path]] = {d.name: list_image_files(d) for d in class_dirs}
        # Files left out for their extension, so the page can list them (a silently smaller class misleads).
        self.skipped_files: list[Path] = [f for d in class_dirs for f in list_skipped_files(d)]
        empty = [str(d) for d in class_dirs if not self._files[d.name]]
        if empty:
            raise ValueError(
                f"class folder(s) without images ({', '.join(sorted(IMAGE_EXTENSIONS))}): {', '.join(empty)}"
            )
        self.class_names = [d.name for d in class_dirs]



class MiniImageNetCSVImageSet(_FileListImageSet):
    """miniImageNet in the Ravi & Larochelle layout: ``<root>/images/*.jpg`` plus ``<root>/<split>.csv``.

    Each csv has the header ``filename,label`` and one row per image. Classes are the labels, sorted;
    images keep their csv order. Every listed image must exist (checked on construction).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        spec: ImageSpec = MINIIMAGENET_SPEC,
        name: str | None = None,
        cache_size: int | None = DEFAULT_CACHE_SIZE,
    ) -> None:
        root = Path(root).expanduser()
        super().__init__(name=name or f"{root.name}/{split}", spec=spec, cache_size=cache_size)
        csv_path = root / f"{split}.csv"
        image_dir = root / "images"
        if not csv_path.is_file():
            raise FileNotFoundError(f"split file {csv_path} does not exist (expected <root>/{split}.csv)")
        if not image_dir.is_dir():
            raise FileNotFoundError(f"image folder {image_dir} does not exist (expected <root>/images/)")
        self.root = root

        files: dict[str, list[Path]] = {}
        with open(csv_path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"filename", "label"} <= set(reader.fieldnames):
                raise ValueError(
                    f"{csv_path} must start with the header 'filename,label', got {reader.fieldnames}"
                )
            for line_number, row in enumerate(reader, start=2):
                filename, label = (row.get("filename") or "").strip(), (row.get("label") or "").strip()
                if not filename or not label:
                    raise ValueError(f"{csv_path}, line {line_number}: needs both a filename and a label")
                files.setdefault(label, []).append(image_dir / filename)
        if not files:
            raise ValueError(f"{csv_path} lists no images")
        missing = [str(p) for paths in files.values() for p in paths if not p.is_file()]
        if missing:
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise FileNotFoundError(
                f"{len(missing)} image file(s) listed in {csv_path} are missing: {', '.join(missing[:5])}{more}"
            )
        self._files = {label: files[label] for label in sorted(files)}
        self.class_names = list(self._files)



def load_episode_folder(path: str | Path, spec: ImageSpec) -> Task:
    """Read a user-made episode: ``support/<label>/<images>`` plus ``query/<label>/<images>`` (labelled) or
    ``query/<images>`` (unlabelled, ``query_y`` is ``None``).

    Class names are the support label folders, sorted. Files that are not images by their extension are left
    out and listed in ``provenance["skipped_files"]`` (relative paths). Every image is decoded before anything is
    returned; all unreadable files are reported together in one :class:`ImageError`. Structural problems
    (missing folders, fewer than two classes, empty classes, unknown query labels) raise ``ValueError``.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"episode folder {root} does not exist")
    support_dir, query_dir = root / "support", root / "query"
    if not support_dir.is_dir():
        raise ValueError(f"episode folder {root} has no support/ folder (expected support/<label>/<images>)")

    loose_support = list_image_files(support_dir)
    if loose_support:
        # Images directly in support/ have no label; silently dropping them would surprise the user.
        raise ValueError(
            f"{support_dir} holds images outside any label folder ({loose_support[0].name}, ...); "
            f"put each class's images in support/<label>/"
        )
    class_dirs = _subfolders(support_dir)
    if len(class_dirs) < 2:
        raise ValueError(
            f"{support_dir} needs at least 2 label folders to classify between, found {len(class_dirs)}"
        )
    support_files = {d.name: list_image_files(d) for d in class_dirs}
    empty = [str(d) for d in class_dirs if not support_files[d.name]]
    if empty:
        raise ValueError(f"support class folder(s) without images: {', '.join(empty)}")
    class_names = [d.name for d in class_dirs]
    label_of = {class_name: i for i, class_name in enumerate(class_names)}

    if not query_dir.is_dir():
        raise ValueError(f"episode folder {root} has no query/ folder (expected query/<images> or query/<label>/)")
    loose_query = list_image_files(query_dir)
    query_label_dirs = _subfolders(query_dir)
    if loose_query and query_label_dirs:
        raise ValueError(
            f"{query_dir} mixes label folders and loose images; use either query/<label>/<images> "
            f"(labelled) or query/<images> (unlabelled)"
        )
    unknown = [d.name for d in query_label_dirs if d.name not in label_of]
    if unknown:
        raise ValueError(
            f"query label folder(s) {unknown} in {query_dir} are not among the support labels {class_names}"
        )
    labelled = bool(query_label_dirs)
    query_files: list[tuple[Path, int]] = (
        [(f, label_of[d.name]) for d in query_label_dirs for f in list_image_files(d)]
        if labelled
        else [(f, -1) for f in loose_query]
    )
    if not query_files:
        raise ValueError(f"{query_dir} has no query images")

    support_pairs = [(f, label_of[c]) for c in class_names for f in support_files[c]]
    skipped = [*(f for d in class_dirs for f in list_skipped_files(d)), *list_skipped_files(query_dir),
               *(f for d in query_label_dirs for f in list_skipped_files(d))]
    decoded: dict[Path, torch.Tensor] = {}
    problems: list[str] = []
    for file, _ in support_pairs + query_files:
        try:
            decoded[file] = decode_image(file, spec)
        except ImageError as error:
            problems.append(str(error))
    if problems:
        raise ImageError(f"{len(problems)} image(s) in {root} could not be read:\n" + "\n".join(problems))

    return Task(
        support_x=torch.stack([decoded[f] for f, _ in support_pairs]),
        support_y=torch.tensor([label for _, label in support_pairs], dtype=torch.int64),
        query_x=torch.stack([decoded[f] for f, _ in query_files]),
        query_y=torch.tensor([label for _, label in query_files], dtype=torch.int64) if labelled else None,
        class_names=class_names,
        support_sources=[str(f) for f, _ in support_pairs],
        query_sources=[str(f) for f, _ in query_files],
        provenance={
            "source": "folder",
            "path": str(root),
            "skipped_files": [str(f.relative_to(root)) for f in sorted(skipped)],
        },
    )
