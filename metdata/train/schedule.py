"""The training schedule, as data: the phases of a run, the learning rate of each epoch, and
when early stopping ends the run. Pure: every answer is a function of the settings and the
epochs already run (history.json), so a resumed run takes up exactly the schedule it had.

A pretrained backbone trains in two phases: ``head_epochs`` epochs of the head alone (the
backbone frozen) at ``learning_rate``, then fine-tuning (the backbone's top layers too) at
``fine_tune_lr``. Any other model has one phase at ``learning_rate``.

Within each phase, ``plateau`` (patience in epochs, 0 = a constant rate) multiplies the rate by
``factor`` whenever the monitored loss has not improved for that many epochs (Keras'
``ReduceLROnPlateau``, replayed from the history). Early stopping (patience in epochs, 0 = off)
ends the run when the best checkpoint's metric has not improved for that many epochs of the
last phase: best.keras then holds the best weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HEAD, MAIN = "head", "main"


@dataclass(frozen=True)
class Schedule:
    """A run's schedule.

    Attributes:
        epochs: the run's epochs.
        learning_rate: the rate of the first phase (the only one without ``head_epochs``).
        head_epochs: epochs of the head-only phase (0: none).
        fine_tune_lr: the rate of the phase after the head phase.
        plateau: epochs without a lower loss before the rate is cut (0: constant rate).
        early_stopping: epochs without a better metric before the run stops (0: never).
        factor: what a plateau multiplies the rate by.
        min_lr: the rate never goes under this.
    """

    epochs: int
    learning_rate: float
    head_epochs: int = 0
    fine_tune_lr: float = 1e-5
    plateau: int = 0
    early_stopping: int = 0
    factor: float = 0.2
    min_lr: float = 1e-7

    def phase(self, epoch: int) -> str:
        """``HEAD`` for the head-only epochs, else ``MAIN``.

        >>> [Schedule(5, 1e-3, head_epochs=2).phase(e) for e in range(4)]
        ['head', 'head', 'main', 'main']
        """
        return HEAD if epoch < self.head_epochs else MAIN

    def phase_start(self, epoch: int) -> int:
        """The first epoch of ``epoch``'s phase."""
        return 0 if self.phase(epoch) == HEAD else min(self.head_epochs, self.epochs)

    def learning_rate_at(self, epoch: int, losses: list[float]) -> float:
        """The rate of ``epoch``, given the monitored loss of each epoch before it (``losses[e]``
        for epoch ``e``).

        >>> s = Schedule(10, 1.0, plateau=2, factor=0.5)
        >>> [s.learning_rate_at(e, [3, 2, 2, 2, 2, 1, 1, 1]) for e in (1, 3, 4, 5, 8)]
        [1.0, 1.0, 0.5, 0.5, 0.25]
        """
        start = self.phase_start(epoch)
        rate = self.learning_rate if self.phase(epoch) == HEAD or not self.head_epochs else self.fine_tune_lr
        if not self.plateau:
            return rate
        best, wait = math.inf, 0
        for value in losses[start:epoch]:
            if value < best:
                best, wait = value, 0
                continue
            wait += 1
            if wait >= self.plateau:
                rate, wait = max(rate * self.factor, self.min_lr), 0
        return rate

    def stops_after(self, metrics: list[float]) -> bool:
        """Whether early stopping ends the run after the last of ``metrics`` (the monitored
        metric of each epoch run so far, higher is better), counting only the last phase.

        >>> s = Schedule(20, 1e-3, early_stopping=2)
        >>> s.stops_after([0.5, 0.6, 0.6]), s.stops_after([0.5, 0.6, 0.6, 0.55])
        (False, True)
        >>> Schedule(20, 1e-3, head_epochs=3, early_stopping=1).stops_after([0.9, 0.1, 0.1])
        False
        """
        if not self.early_stopping or not metrics:
            return False
        start = self.phase_start(self.epochs - 1)
        seen = metrics[start:]
        if not seen:
            return False
        best = max(range(len(seen)), key=lambda i: (seen[i], -i))  # the first epoch reaching the best
        return len(seen) - 1 - best >= self.early_stopping

    def stop_epoch(self, metrics: list[float]) -> int | None:
        """How many epochs a run with these ``metrics`` ran before early stopping ended it (None:
        it did not), replaying the rule epoch by epoch.

        >>> Schedule(20, 1e-3, early_stopping=1).stop_epoch([0.5, 0.4, 0.9])
        2
        """
        for n in range(1, len(metrics) + 1):
            if self.stops_after(metrics[:n]):
                return n
        return None
