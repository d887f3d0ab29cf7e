"""donkeycar's training input pipeline, fed from decoded frames by `tf.data` instead of a Python generator.

`donkeycar.pipeline.training.train` builds its datasets from `BatchSequence`: a Python generator that, per
record and per epoch, loads the frame, augments it, normalises it to float64 and hands it to
`tf.data.Dataset.from_generator` one record at a time, under the GIL. `cached_input` stands in a
`CachedSequence` for it while donkeycar trains, so everything else stays donkeycar's: the records and their
split, the model, its loss and optimizer, the callbacks (early stop, best checkpoint), the TFLite export.

The stream is the same one, batch for batch: records in the split's order, `repeat().batch()` (so a batch
may run over an epoch's end, as donkeycar's do), images normalised exactly as donkeycar does (x / 255 in
float32 equals donkeycar's float64 x * (1/255) cast to float32 for every byte value), labels from the
model's own `y_transform`. Only the work moves: frames are decoded once (`pitlane.train.frames`), a batch
is one `np.take` from them, normalised in TensorFlow's own threads, and the training-only augmentations (donkeycar's
`ImageAugmentation`, albumentations) run per record in a parallel `tf.data` map on the decoded frame.
donkeycar applies them to the frame it cached on the record, so each epoch re-augments the previous
epoch's result; here each epoch augments the frame itself.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from pitlane.data.tub import CAMERA_KEY
from pitlane.train.frames import tub_frames

FrameSource = Callable[[Sequence[Any]], tuple[np.ndarray, np.ndarray]]


def record_frames(
    records: Sequence[Any], digests: Mapping[str, str], shape: tuple[int, int, int], threads: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, row of each record): the decoded frames of `records` (donkeycar TubRecords) of one or more
    tubs, each tub's frames kept under its content digest (`digests`: tub folder -> digest)."""
    by_tub: dict[str, list[str]] = {}
    for r in records:
        by_tub.setdefault(os.path.abspath(r.base_path), []).append(r.underlying[CAMERA_KEY])
    parts, offsets = [], {}
    start = 0
    for tub, names in by_tub.items():
        frames = tub_frames(tub, digests[tub], names, shape, threads)
        parts.append(frames.pixels)
        offsets[tub] = (start, frames.rows)
        start += len(frames.pixels)
    pixels = parts[0] if len(parts) == 1 else np.concatenate(parts)
    rows = np.array(
        [
            offsets[os.path.abspath(r.base_path)][0]
            + offsets[os.path.abspath(r.base_path)][1][r.underlying[CAMERA_KEY]]
            for r in records
        ],
        np.int64,
    )
    return pixels, rows


def labels(model: Any, records: Sequence[Any]) -> Any:
    """The model's own y_transform of every record, stacked: a dict of arrays or one array (float64, the
    types donkeycar's pipeline declares)."""
    ys = [model.y_transform(r) for r in records]
    if isinstance(ys[0], dict):
        return {k: np.asarray([y[k] for y in ys], np.float64) for k in ys[0]}
    return np.asarray(ys, np.float64)


class CachedSequence:
    """What donkeycar's `BatchSequence` is to its `train`: `len()` batches per epoch and `create_tf_data()`."""

    def __init__(
        self,
        model: Any,
        config: Any,
        records: Sequence[Any],
        is_train: bool,
        frames: FrameSource,
        seed: int,
        deterministic: bool,
    ) -> None:
        from donkeycar.pipeline.augmentations import ImageAugmentation

        self.model = model
        self.batch_size = int(config.BATCH_SIZE)
        self.records = list(records)
        self.augmentation = ImageAugmentation(config, "AUGMENTATIONS") if is_train else None
        if self.augmentation is not None and len(self.augmentation.augmentations) == 0:
            self.augmentation = None
        self.frames = frames
        self.seed = seed
        self.deterministic = deterministic  # augmentations in record order from `seed`, one at a time

    def __len__(self) -> int:
        return math.ceil(len(self.records) / self.batch_size)

    def create_tf_data(self):
        import tensorflow as tf

        pixels, rows = self.frames(self.records)
        ys = labels(self.model, self.records)
        ds = tf.data.Dataset.from_tensor_slices((rows, ys))
        shape = pixels.shape[1:]

        def normalise(img):  # == donkeycar's normalize_image, then Keras' float32 cast, for every byte value
            return tf.cast(img, tf.float32) / 255.0

        # frames stay in the numpy array (a TensorFlow constant would copy them); a batch is one np.take
        def take(r: np.ndarray) -> np.ndarray:
            return np.take(pixels, r, axis=0)

        if self.augmentation is None:

            def to_batch(r, y):
                img = tf.numpy_function(take, [r], tf.uint8, stateful=False)
                return {"img_in": normalise(tf.ensure_shape(img, (None, *shape)))}, y

            return ds.repeat().batch(self.batch_size).map(to_batch, num_parallel_calls=tf.data.AUTOTUNE)

        augment = self.augmentation.augmentations
        if self.deterministic:  # one RNG, drawn in record order: the same seed augments the same way
            augment.set_random_seed(self.seed)

        def augmented(r: np.ndarray) -> np.ndarray:
            return augment(image=pixels[r])["image"]

        def to_record(r, y):
            img = tf.numpy_function(augmented, [r], tf.uint8, stateful=True)
            return {"img_in": normalise(tf.ensure_shape(img, shape))}, y

        calls = 1 if self.deterministic else tf.data.AUTOTUNE
        return ds.repeat().map(to_record, num_parallel_calls=calls).batch(self.batch_size)


def supports(model: Any, config: Any) -> bool:
    """Whether `CachedSequence` feeds this model as donkeycar would: image-only input, one record per
    sample, no TRANSFORMATIONS (pitlane refuses them; a donkeycar config may still hold them)."""
    from donkeycar.parts.keras import KerasPilot

    return (
        type(model).x_transform is KerasPilot.x_transform
        and model.seq_size() == 0
        and not getattr(config, "TRANSFORMATIONS", None)
        and not getattr(config, "POST_TRANSFORMATIONS", None)
    )


@contextlib.contextmanager
def cached_input(
    digests: Mapping[str, str],
    shape: tuple[int, int, int],
    seed: int,
    deterministic: bool,
    threads: int | None = None,
) -> Iterator[None]:
    """While inside, donkeycar's `train` feeds its model from decoded frames (`CachedSequence`) instead of
    its per-record generator; a model it cannot feed that way keeps donkeycar's `BatchSequence`."""
    import donkeycar.pipeline.training as training

    original = training.BatchSequence
    digests = {os.path.abspath(k): v for k, v in digests.items()}

    def frames(records: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        return record_frames(records, digests, shape, threads)

    def sequence(model, config, records, is_train):
        if not supports(model, config):
            return original(model, config, records, is_train)
        return CachedSequence(model, config, records, is_train, frames, seed, deterministic)

    training.BatchSequence = sequence
    try:
        yield
    finally:
        training.BatchSequence = original
