"""Checkpoints, in one place.

- :mod:`~core.checkpoint.format`: the file (safetensors tensors plus our JSON header; never unpickled);
- :mod:`~core.checkpoint.metadata`: what a deployable checkpoint says about itself, typed and versioned;
- :mod:`~core.checkpoint.learner_io`: save and load a ``Learner``;
- :mod:`~core.checkpoint.catalog`: discovery in the search folders, shipped manifests and their hashes, the default;
- :mod:`~core.checkpoint.training_state`: the files meta-training and pre-training resume from.

Packaging a trained checkpoint for shipping (measure it, write it with its results, update the manifest) is a
workflow on top of this package: :mod:`core.packaging`. Nothing here imports training.
"""

from core.checkpoint.catalog import (
    MANIFEST_NAME,
    CheckpointEntry,
    Manifest,
    ManifestEntry,
    default_checkpoint,
    find_checkpoints,
    is_default_checkpoint,
    read_manifest,
    read_metadata,
    search_dirs,
    verify_shipped,
    write_manifest,
)
from core.checkpoint.format import CheckpointError, file_sha256
from core.checkpoint.learner_io import (
    code_version,
    learner_metadata,
    load_learner,
    save_learner,
    supported_rules,
)
from core.checkpoint.metadata import (
    SCHEMA_VERSION,
    BackboneSetting,
    CheckpointMetadata,
    HeldOutResult,
    HeldOutResults,
    InnerSteps,
    PretrainingRecord,
    RuleSetting,
    ShippedInfo,
    TrainingData,
    TrainingRecord,
    TuningRecord,
    ValidationResult,
    parse_metadata,
)

__all__ = [
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "BackboneSetting",
    "CheckpointEntry",
    "CheckpointError",
    "CheckpointMetadata",
    "HeldOutResult",
    "HeldOutResults",
    "InnerSteps",
    "Manifest",
    "ManifestEntry",
    "PretrainingRecord",
    "RuleSetting",
    "ShippedInfo",
    "TrainingData",
    "TrainingRecord",
    "TuningRecord",
    "ValidationResult",
    "code_version",
    "default_checkpoint",
    "file_sha256",
    "find_checkpoints",
    "is_default_checkpoint",
    "learner_metadata",
    "load_learner",
    "parse_metadata",
    "read_manifest",
    "read_metadata",
    "save_learner",
    "search_dirs",
    "supported_rules",
    "verify_shipped",
    "write_manifest",
]
