"""Data: image decoding, labelled image sets, episode sampling, MNIST-1D and the sine regression family."""

from core.data.folders import FolderImageSet, MiniImageNetCSVImageSet, list_image_files, load_episode_folder
from core.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_IMAGE_PIXELS,
    MINIIMAGENET_SPEC,
    OMNIGLOT_SPEC,
    ImageError,
    ImageSpec,
    decode_image,
)
from core.data.mnist1d import MNIST1DSet
from core.data.omniglot import (
    OmniglotImageSet,
    ensure_omniglot,
    list_alphabets,
)
from core.data.sampler import EpisodeSampler, LabelledImageSet
from core.data.sine import SineTaskFamily
from core.data.task import Task

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_IMAGE_PIXELS",
    "MINIIMAGENET_SPEC",
    "OMNIGLOT_SPEC",
    "EpisodeSampler",
    "FolderImageSet",
    "ImageError",
    "ImageSpec",
    "LabelledImageSet",
    "MNIST1DSet",
    "MiniImageNetCSVImageSet",
    "OmniglotImageSet",
    "SineTaskFamily",
    "Task",
    "decode_image",
    "ensure_omniglot",
    "list_alphabets",
    "list_image_files",
    "load_episode_folder",
]
