"""The model registry: a name to a ``build_model()`` factory returning a compiled Keras model.

Models take uint8 RGB images (S, S, 3) and prepare them themselves (``seed-cnn`` rescales,
a backbone applies its own ImageNet preprocessing), so an exported model predicts from the
same arrays the store holds. Augmentation is made of Keras preprocessing layers inside the
model: active in training only, never at inference.

Beside the blog's ``seed-cnn``, the registry holds ``keras.applications`` backbones with a new
classification head (``BACKBONES``). Their graph is flat (the backbone's layers are the model's
own layers, so Grad-CAM finds the last convolution and fine-tuning picks the top layers by
name); ImageNet or file weights are loaded by Keras into the backbone as Keras builds it, then
copied layer by layer into the flat model. ``set_stage`` makes a backbone model train its head
only (backbone frozen, BatchNormalization in inference mode), its top layers too (fine-tuning,
BatchNormalization still frozen), or every layer (from scratch).

Mixed precision: the model is built under the run's Keras dtype policy (``precision``); the
softmax output is float32 whatever the policy.

Call the factories inside ``strategy.scope()`` (``jobs/train.py`` does). TensorFlow and
Keras are imported inside the factories, never when this module is imported.
"""

from __future__ import annotations

import contextlib
import logging
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from metdata.errors import UserError
from metdata.train.quiet_tf import tensorflow

log = logging.getLogger(__name__)

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
#: the stages of ``set_stage``
ALL, HEAD, FINE_TUNE = "all", "head", "fine-tune"
#: the layers a backbone model adds around the backbone (named, so the rest is the backbone)
HEAD_LAYERS = ("head_pool", "head_dropout", "probabilities")
AUGMENT_PREFIX = "augment_"


class UnknownModel(UserError):
    """A model name that is not in the registry."""


class WeightsError(UserError):
    """Weights that cannot be loaded into the backbone; the message says why and what to give instead."""


@dataclass(frozen=True)
class ModelOptions:
    """What a factory needs.

    Attributes:
        size: side of the square input images.
        n_classes: number of output classes.
        augment: add the random zoom/shift/flip/rotation layers (training only).
        learning_rate: Adam's learning rate.
        seed: seed of the augmentation layers.
        weights: a backbone's initial weights: "imagenet" (downloaded by Keras), the path of a
            weights file of the bare backbone (``include_top=False``), or "none" (random).
        precision: the Keras dtype policy, one of ``PRECISIONS``.
        jit: compile the train step with XLA.
        steps_per_execution: batches per compiled call.
    """

    size: int
    n_classes: int
    augment: bool = True
    learning_rate: float = 1e-3
    seed: int = 0
    weights: str = "none"
    precision: str = "float32"
    jit: bool = False
    steps_per_execution: int = 1


def _keras():
    tensorflow()  # TensorFlow first, without its start-up notices
    import keras

    return keras


@contextlib.contextmanager
def precision(policy: str):
    """Build layers under the Keras dtype policy ``policy``; the global policy is put back after
    (layers keep the policy they were built with)."""
    keras = _keras()
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def _augmentation(x, seed: int):
    """The blog's augmentation (Keras 2's shear stood in for by a small rotation), on float pixels."""
    layers = _keras().layers
    x = layers.RandomZoom(0.2, seed=seed, name=f"{AUGMENT_PREFIX}zoom")(x)
    x = layers.RandomTranslation(0.1, 0.1, seed=seed + 1, name=f"{AUGMENT_PREFIX}shift")(x)
    x = layers.RandomFlip("horizontal", seed=seed + 2, name=f"{AUGMENT_PREFIX}flip")(x)
    return layers.RandomRotation(0.03, seed=seed + 3, name=f"{AUGMENT_PREFIX}rotation")(x)


def _compile(model, options: ModelOptions):
    keras = _keras()
    model.compile(
        optimizer=keras.optimizers.Adam(options.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=options.jit,
        steps_per_execution=options.steps_per_execution,
    )
    return model


def build_seed_cnn(options: ModelOptions):
    """The blog's small CNN: three conv/pool blocks, a 64-unit dense layer, softmax.

    uint8 input -> Rescaling(1/255) -> [RandomZoom, RandomTranslation, RandomFlip, a small
    RandomRotation, standing in for Keras 2's shear] -> Conv 32 -> Pool -> Conv 32 -> Pool ->
    Conv 64 -> Pool -> Flatten -> Dense 64 relu -> Dense softmax (float32); sparse categorical
    cross-entropy, Adam, accuracy.

    Raises:
        WeightsError: weights other than "none" (this network has no pretrained weights).
    """
    if options.weights != "none":
        raise WeightsError(f"--weights {options.weights}: seed-cnn has no pretrained weights; give --weights none")
    keras = _keras()
    layers = keras.layers
    with precision(options.precision):
        inputs = keras.Input((options.size, options.size, 3), dtype="uint8", name="image")
        x = layers.Rescaling(1 / 255)(inputs)
        if options.augment:
            x = _augmentation(x, options.seed)
        for filters in (32, 32, 64):
            x = layers.Conv2D(filters, 3, activation="relu")(x)
            x = layers.MaxPooling2D(2)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(64, activation="relu")(x)
        outputs = layers.Dense(options.n_classes, activation="softmax", dtype="float32", name="probabilities")(x)
        return _compile(keras.Model(inputs, outputs, name="seed_cnn"), options)


@dataclass(frozen=True)
class Backbone:
    """A ``keras.applications`` network used as a backbone.

    Attributes:
        application: its constructor's name in ``keras.applications``.
        min_size: the smallest input side Keras builds it for.
    """

    application: str
    min_size: int = 32


#: registry name -> backbone; each model is the backbone (its own ImageNet preprocessing
#: included) + global average pooling + dropout + a softmax layer
BACKBONES: dict[str, Backbone] = {
    "efficientnetv2-b0": Backbone("EfficientNetV2B0"),
    "convnext-tiny": Backbone("ConvNeXtTiny"),
}


def build_backbone_model(backbone: str, options: ModelOptions):
    """A ``keras.applications`` backbone with a new classification head.

    uint8 input -> [augmentation] -> the backbone (its own preprocessing first, so raw pixels go
    in) -> GlobalAveragePooling -> Dropout 0.2 -> Dense softmax (float32). Every layer is
    trainable as built (``set_stage`` changes that); sparse categorical cross-entropy, Adam, accuracy.

    Raises:
        WeightsError: a weights file that is missing or does not fit the backbone, or ImageNet
            weights that cannot be downloaded.
        UserError: images smaller than the backbone allows.
    """
    spec = BACKBONES[backbone]
    if options.size < spec.min_size:
        raise UserError(
            f"{backbone} needs images of at least {spec.min_size} px; the store's are {options.size} px: "
            "build a store with a larger --size, or train seed-cnn"
        )
    keras = _keras()
    layers = keras.layers
    application = getattr(keras.applications, spec.application)
    shape = (options.size, options.size, 3)
    with precision(options.precision):
        inputs = keras.Input(shape, dtype="uint8", name="image")
        x = layers.Identity(dtype="float32", name="pixels")(inputs)  # the uint8 pixels as floats, unscaled
        if options.augment:
            x = _augmentation(x, options.seed)
        # built on x, the backbone's layers are this model's own (no nested model)
        features = application(include_top=False, weights=None, input_tensor=x).output
        x = layers.GlobalAveragePooling2D(name=HEAD_LAYERS[0])(features)
        x = layers.Dropout(0.2, name=HEAD_LAYERS[1])(x)
        outputs = layers.Dense(options.n_classes, activation="softmax", dtype="float32", name=HEAD_LAYERS[2])(x)
        model = keras.Model(inputs, outputs, name=backbone.replace("-", "_"))
        if options.weights != "none":
            _copy_weights(_pretrained(application, backbone, options.weights, shape), backbone_layers(model))
    return _compile(model, options)


def _pretrained(application, name: str, weights: str, shape: tuple):
    """The bare backbone as Keras builds it with ``weights`` (ImageNet or a file) loaded."""
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"--weights {weights}: no such file. Give the weights of the bare backbone (include_top=False), "
                f"'imagenet' to download them, or 'none' to train {name} from scratch"
            )
        weights = str(path)
    try:
        return application(include_top=False, weights=weights, input_shape=shape)
    except ValueError as exc:  # Keras' layer-count and shape mismatches
        raise WeightsError(
            f"--weights {weights} does not fit {name} ({exc}); give a weights file saved from "
            f"keras.applications.{application.__name__}(include_top=False)"
        ) from exc
    except Exception as exc:  # keras.utils.get_file raises a bare Exception around the download's URLError
        if not isinstance(exc.__context__, urllib.error.URLError):
            raise
        raise WeightsError(
            f"cannot download the ImageNet weights of {name} ({exc}). On a machine without internet, save them "
            f"elsewhere (keras.applications.{application.__name__}(include_top=False).save_weights("
            f"'{name}.weights.h5')) and give --weights PATH"
        ) from exc


def _copy_weights(source, targets: list) -> None:
    """Copy the bare backbone's weights, layer by layer in order, into the flat model's backbone layers."""
    have = [la for la in source.layers if la.weights]
    want = [la for la in targets if la.weights]
    if len(have) != len(want):
        raise WeightsError(f"the loaded backbone has {len(have)} layers with weights, the model {len(want)}")
    for a, b in zip(have, want, strict=True):
        b.set_weights(a.get_weights())


def backbone_layers(model) -> list:
    """The layers of a backbone model that belong to the backbone, input to output."""
    keras = _keras()
    return [
        la
        for la in model.layers
        if not isinstance(la, keras.layers.InputLayer)
        and la.name not in HEAD_LAYERS
        and la.name != "pixels"
        and not la.name.startswith(AUGMENT_PREFIX)
    ]


def set_stage(model, stage: str, fine_tune_layers: int = 0) -> None:
    """Which layers train: ``ALL`` every layer (BatchNormalization learning: from scratch);
    ``HEAD`` the head only, the backbone frozen (its BatchNormalization in inference mode, as
    Keras 3 runs a non-trainable BatchNormalization); ``FINE_TUNE`` the head and the top
    ``fine_tune_layers`` layers of the backbone, BatchNormalization layers excepted (kept in
    inference mode, the keras.io fine-tuning recipe).

    Recompile or rebuild the train function after a change (``jobs/train.py`` does).
    """
    keras = _keras()
    model.trainable = True
    if stage == ALL:
        for layer in model.layers:
            layer.trainable = True
        return
    body = backbone_layers(model)
    top = set(map(id, body[len(body) - fine_tune_layers :])) if stage == FINE_TUNE and fine_tune_layers else set()
    for layer in body:
        layer.trainable = id(layer) in top and not isinstance(layer, keras.layers.BatchNormalization)


def supports_jit(name: str, augment: bool) -> bool:
    """Whether XLA can compile the model's train step: Keras' random image layers (augmentation)
    cannot be compiled; every other layer of the registry can."""
    return not augment


#: model name -> factory
MODELS: dict[str, Callable] = {
    "seed-cnn": build_seed_cnn,
    **{name: partial(build_backbone_model, name) for name in BACKBONES},
}


def build_model(name: str, options: ModelOptions):
    """Build and compile the named model (call inside ``strategy.scope()``).

    Raises:
        UnknownModel: the name is not in ``MODELS``.
        UserError: options the model cannot take (see its factory).
    """
    if name not in MODELS:
        raise UnknownModel(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    if options.precision not in PRECISIONS:
        raise UserError(f"precision {options.precision!r}: choose one of {', '.join(PRECISIONS)}")
    return MODELS[name](options)
