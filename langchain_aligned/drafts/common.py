"""What the draft makers share: settings, cached reports, trainable weights, progress."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from ..errors import InvalidInputError

__all__ = ["ProgressBar", "cached_report", "merged_config", "train_only_layers"]

Config = TypeVar("Config")
Report = TypeVar("Report")


def merged_config(
    kind: type[Config], config: Config | None, settings: dict[str, Any], caller: str
) -> Config:
    """``config`` (or the defaults) with ``settings`` applied, validated by ``kind``.

    Raises:
        InvalidInputError: a setting ``kind`` has no field for (named), or a bad value.
    """
    base = asdict(config or kind())  # type: ignore[call-overload]
    unknown = sorted(set(settings) - set(base))
    if unknown:
        raise InvalidInputError(
            f"{caller}() got unknown settings {unknown}; {kind.__name__} has {sorted(base)}"
        )
    base.update(settings)
    base["prompts"] = tuple(base["prompts"])
    return kind(**base)


def cached_report(kind: type[Report], path: Path) -> Report:
    """The report saved at ``path`` in a made draft's folder, marked as cached."""
    data = json.loads(path.read_text())
    data["folder"] = str(path.parent)
    data["cached"] = True
    return kind(**data)


def train_only_layers(model: Any, train_embeddings: bool) -> list[Any]:
    """Freeze ``model``'s embeddings and output head unless ``train_embeddings``; the
    parameters left to train."""
    frozen: set[int] = set()
    if not train_embeddings:
        frozen = {id(p) for p in model.get_input_embeddings().parameters()}
        head = model.get_output_embeddings()
        if head is not None:
            frozen |= {id(p) for p in head.parameters()}
    trainable = []
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) not in frozen)
        if id(parameter) not in frozen:
            trainable.append(parameter)
    return trainable


class ProgressBar:
    """A tqdm bar per phase of a long task (sampling, teacher passes, optimiser steps)."""

    def __init__(self, enabled: bool, task: str) -> None:
        self._enabled = enabled
        self._task = task
        self._bar: Any = None
        self._phase = ""

    def _open(self, phase: str, total: int) -> None:
        if not self._enabled:
            return
        from tqdm.auto import tqdm

        self.close()
        self._phase = phase
        self._bar = tqdm(total=total, desc=f"{self._task}: {phase}", unit="step")

    def phase(self, phase: str, done: int, total: int) -> None:
        if self._phase != phase:
            self._open(phase, total)
        if self._bar is not None:
            self._bar.n = done
            self._bar.refresh()

    def step(self, done: int, total: int, loss: float) -> None:
        self.phase("training", done, total)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.3f}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
