"""Training donkeycar models on tubs through donkeycar's own pipeline, with a run record per model."""

from pitlane.provenance import RunRecord, TubDigest, run_record_path
from pitlane.train.train import MODEL_TYPES, TrainParams, TubInfo, load_tubs, train_model

__all__ = [
    "MODEL_TYPES",
    "RunRecord",
    "TrainParams",
    "TubDigest",
    "TubInfo",
    "load_tubs",
    "run_record_path",
    "train_model",
]
