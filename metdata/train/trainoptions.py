"""A training run's settings: ``TrainOptions``, checked when built, with the defaults that depend
on the model and the machine resolved before the run starts (what run.json records).

Pure: importing it never starts TensorFlow, so the CLI refuses options that do not fit together
before Keras loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from metdata.errors import UserError
from metdata.storage.layout import DEFAULT_STORE
from metdata.train import training
from metdata.train.models import BACKBONES, MODELS, PRECISIONS, supports_jit
from metdata.train.schedule import Schedule

LR_SCHEDULES = ("constant", "plateau")


@dataclass(frozen=True)
class TrainOptions:
    """One training run's settings (all of them go to run.json and must match to resume).

    Attributes:
        target: built-in target name or a target TOML path.
        out: RUN, a local folder or s3:// prefix.
        model: a name in ``metdata.train.models.MODELS``.
        epochs: total epochs (a resumed run continues up to it).
        batch_size: per-replica batch; the global batch is this times the replicas.
        val_fraction: share of each class kept for validation.
        seed: weights, augmentation and shuffling seed.
        devices: "all" or how many GPUs (CPU devices when there is no GPU).
        class_weights: weight the loss by balanced class weights.
        store: the Zarr store's name under the data root.
        augment: the model's augmentation layers.
        learning_rate: Adam's rate (of the head phase, for a pretrained backbone).
        weights: a backbone's initial weights: "imagenet", a weights file, or "none" (None: imagenet
            for a backbone, none for seed-cnn).
        head_epochs: epochs of training the head alone before fine-tuning a pretrained backbone
            (None: 5 with pretrained weights, else 0).
        fine_tune_layers: the backbone's top layers trained after the head phase (BatchNormalization excepted).
        fine_tune_lr: Adam's rate after the head phase.
        precision: "auto" (float32 on CPU; mixed_bfloat16 on GPUs that compute it natively, else
            mixed_float16), or one of ``metdata.train.models.PRECISIONS``.
        jit: XLA compilation of the train step (None: on a single GPU replica when the model allows).
        steps_per_execution: batches per compiled call (None: 16 on GPUs, 1 on CPU).
        lr_schedule: "constant", or "plateau" (cut the rate x0.2 after lr_patience epochs without a lower loss).
        lr_patience: the plateau's patience in epochs.
        early_stopping: stop after this many epochs without a better checkpoint metric (0: never).
        cache_mb: keep decoded chunks in memory up to this many MB, shared by the training and
            validation input by their images (0: none; a resumed run may change it).

    Raises:
        UserError: a value out of range, or options that do not fit together (named, with the fix).
    """

    target: str
    out: str
    model: str = "seed-cnn"
    epochs: int = 100
    batch_size: int = 64
    val_fraction: float = 0.2
    seed: int = 0
    devices: str = "all"
    class_weights: bool = True
    store: str = DEFAULT_STORE
    augment: bool = True
    learning_rate: float = 1e-3
    weights: str | None = None
    head_epochs: int | None = None
    fine_tune_layers: int = 20
    fine_tune_lr: float = 1e-5
    precision: str = "auto"
    jit: bool | None = None
    steps_per_execution: int | None = None
    lr_schedule: str = "constant"
    lr_patience: int = 3
    early_stopping: int = 0
    cache_mb: float = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "lr_patience", "steps_per_execution"):
            _check_whole(name, getattr(self, name), 1, optional=name == "steps_per_execution")
        for name in ("head_epochs", "fine_tune_layers", "early_stopping"):
            _check_whole(name, getattr(self, name), 0, optional=name == "head_epochs")
        training.check_val_fraction(self.val_fraction)
        mb = self.cache_mb
        if isinstance(mb, bool) or not isinstance(mb, int | float) or not 0 <= mb < math.inf:
            raise UserError(f"cache_mb {self.cache_mb!r}: give the MB of decoded images to keep in memory, 0 for none")
        for name in ("learning_rate", "fine_tune_lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise UserError(f"{name} {value!r}: give a positive learning rate, e.g. 1e-3")
        if self.precision not in ("auto", *PRECISIONS):
            raise UserError(f"precision {self.precision!r}: choose auto or one of {', '.join(PRECISIONS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UserError(f"lr_schedule {self.lr_schedule!r}: choose one of {', '.join(LR_SCHEDULES)}")
        if self.jit and not supports_jit(self.model, self.augment):
            raise UserError(
                "--jit: XLA cannot compile Keras' random image layers (the augmentation); add --no-augment, "
                "or leave --jit out"
            )
        if self.weights is not None and (not isinstance(self.weights, str) or not self.weights.strip()):
            raise UserError(f"weights {self.weights!r}: give imagenet, none or the path of a weights file")
        if self.model in MODELS and self.model not in BACKBONES and self.weights not in (None, "none"):
            raise UserError(f"--weights {self.weights}: {self.model} has no pretrained weights; leave --weights out")
        if self.head_epochs and not (self.model in BACKBONES and self.weights != "none"):
            raise UserError(
                f"--head-epochs {self.head_epochs}: the head-first phase needs a backbone with pretrained weights "
                f"(--model {' or '.join(BACKBONES)} --weights imagenet or PATH); {self.model} with weights "
                f"{self.weights or 'none'} trains every layer from the first epoch"
            )

    def resolved(self, gpus: int = 0, bf16: bool = False) -> TrainOptions:
        """These options with the defaults that depend on the model and the machine decided
        (what run.json records): weights, head_epochs, precision.

        >>> TrainOptions("t", "o", model="efficientnetv2-b0").resolved().weights
        'imagenet'
        >>> TrainOptions("t", "o").resolved(gpus=1, bf16=True).precision
        'mixed_bfloat16'
        """
        weights = self.weights or ("imagenet" if self.model in BACKBONES else "none")
        pretrained = self.model in BACKBONES and weights != "none"
        head = self.head_epochs if self.head_epochs is not None else (5 if pretrained else 0)
        precision = self.precision
        if precision == "auto":
            precision = "float32" if not gpus else ("mixed_bfloat16" if bf16 else "mixed_float16")
        return replace(self, weights=weights, head_epochs=head, precision=precision)

    def compilation(self, gpus: int, replicas: int) -> tuple[bool, int]:
        """(XLA on or off, batches per compiled call) on a machine with ``gpus`` GPUs training
        ``replicas`` replicas: XLA by default on one GPU replica only (slower than TensorFlow's
        own kernels on CPU, and it fails across CPU replicas); 16 batches a call on GPUs, 1 on CPU.

        >>> TrainOptions("t", "o", augment=False).compilation(gpus=1, replicas=1)
        (True, 16)
        >>> TrainOptions("t", "o").compilation(gpus=0, replicas=2)
        (False, 1)

        Raises:
            UserError: ``jit`` asked for with several CPU replicas.
        """
        jit = self.jit
        if jit is None:
            jit = bool(gpus) and replicas == 1 and supports_jit(self.model, self.augment)
        elif jit and replicas > 1 and not gpus:
            raise UserError(
                f"--jit with {replicas} CPU replicas: XLA cannot run one model across CPU devices (TensorFlow's "
                "'variable on a different device'); give --devices 1 or --no-jit"
            )
        return jit, self.steps_per_execution or (16 if gpus else 1)

    @property
    def pretrained(self) -> bool:
        """A backbone starting from pretrained weights (trained in two phases)."""
        return self.model in BACKBONES and self.weights not in (None, "none")

    def schedule(self) -> Schedule:
        """The run's schedule (phases, learning rates, early stopping) of resolved options."""
        return Schedule(
            epochs=self.epochs,
            learning_rate=self.learning_rate,
            head_epochs=self.head_epochs if self.pretrained else 0,
            fine_tune_lr=self.fine_tune_lr,
            plateau=self.lr_patience if self.lr_schedule == "plateau" else 0,
            early_stopping=self.early_stopping,
        )


def _check_whole(name: str, value, least: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise UserError(f"{name} {value!r}: give a whole number of at least {least}")
