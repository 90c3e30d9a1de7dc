"""The model registry: a name to a ``build_model()`` factory returning a compiled Keras model.

Models take uint8 RGB images (S, S, 3) and rescale them themselves, so an exported model
predicts from the same arrays the store holds. Augmentation is made of Keras preprocessing
layers inside the model: active in training only, never at inference.

Call the factories inside ``strategy.scope()`` (``jobs/train.py`` does). TensorFlow and
Keras are imported inside the factories, never when this module is imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from metdata.errors import UserError


class UnknownModel(UserError):
    """A model name that is not in the registry."""


@dataclass(frozen=True)
class ModelOptions:
    """What a factory needs.

    Attributes:
        size: side of the square input images.
        n_classes: number of output classes.
        augment: add the random zoom/shift/flip/rotation layers (training only).
        learning_rate: Adam's learning rate.
        seed: seed of the augmentation layers.
    """

    size: int
    n_classes: int
    augment: bool = True
    learning_rate: float = 1e-3
    seed: int = 0


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


def build_seed_cnn(options: ModelOptions):
    """The blog's small CNN: three conv/pool blocks, a 64-unit dense layer, softmax.

    uint8 input -> Rescaling(1/255) -> [RandomZoom, RandomTranslation, RandomFlip, a small
    RandomRotation, standing in for Keras 2's shear] -> Conv 32 -> Pool -> Conv 32 -> Pool ->
    Conv 64 -> Pool -> Flatten -> Dense 64 relu -> Dense softmax; sparse categorical
    cross-entropy, Adam, accuracy.
    """
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input((options.size, options.size, 3), dtype="uint8", name="image")
    x = layers.Rescaling(1 / 255)(inputs)
    if options.augment:
        s = options.seed
        x = layers.RandomZoom(0.2, seed=s)(x)
        x = layers.RandomTranslation(0.1, 0.1, seed=s + 1)(x)
        x = layers.RandomFlip("horizontal", seed=s + 2)(x)
        x = layers.RandomRotation(0.03, seed=s + 3)(x)
    for filters in (32, 32, 64):
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(options.n_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="seed_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(options.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


#: model name -> factory
MODELS: dict[str, Callable] = {"seed-cnn": build_seed_cnn}


def build_model(name: str, options: ModelOptions):
    """Build and compile the named model (call inside ``strategy.scope()``).

    Raises:
        UnknownModel: the name is not in ``MODELS``.
    """
    if name not in MODELS:
        raise UnknownModel(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[name](options)
