"""Non-finite losses: a training step checks its loss terms once, after the backward passes and before
any optimizer applies them, and raises :class:`NonFiniteLoss` instead of stepping; the loop's
:class:`BadStepGuard` logs the skipped step and stops the run after too many in a row."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ganlab.core import distributed as dist
from ganlab.core.errors import NonFiniteError
from ganlab.core.rundir import RunDir


class NonFiniteLoss(Exception):
    """Raised by a step before its optimizers step: the named loss terms are NaN or Inf."""

    def __init__(self, terms: list[str]) -> None:
        super().__init__(", ".join(terms))
        self.terms = terms


def check_finite(
    losses: dict[str, torch.Tensor], grads: dict[str, Iterable[torch.nn.Parameter]] | None = None
) -> None:
    """Raise :class:`NonFiniteLoss` if any 0-d loss tensor (all on one device) is NaN or Inf, or the
    gradients of the parameters in ``grads`` are (their total 2-norm, by network name, as ``grad:NAME``).
    One fused check, so one device sync per step; the terms are named only when one is bad.

    Finite losses can come with non-finite gradients: an exploding backward (instance norms multiply
    the gradient of a flat map by up to 316 each, docs/cpu-recipe.md) overflowed to inf in a stem conv
    while every loss stayed normal, and Adam would have written NaN into the weights. Pass ``grads``
    unless a GradScaler already skips such steps (fp16)."""
    terms = {k: v.detach().float().reshape(()) for k, v in losses.items()}
    for name, params in (grads or {}).items():
        gs = [p.grad for p in params if p.grad is not None]
        if gs:
            # The total 2-norm: NaN or Inf where any gradient is, Inf past about 1.8e19 (its squares leave
            # fp32's range: an explosion all the same). 8x faster than the largest |gradient| (the inf
            # norm): 5 ms against 38 ms for resnet9's four networks (28M parameters) on a 2-core CPU.
            terms[f"grad:{name}"] = torch.nn.utils.get_total_norm(gs, norm_type=2.0).float()
    values = torch.stack(list(terms.values()))
    # Under torchrun every process skips the step if any of them saw a bad loss: the gradients were
    # averaged across processes, so a NaN on one reached all, and they must stay in step.
    if dist.all_true(bool(torch.isfinite(values).all())):
        return
    bad = [k for k, v in terms.items() if not bool(torch.isfinite(v).all())]
    # A bad loss makes its gradients bad too: name the gradients only when every loss was finite.
    bad = [k for k in bad if k in losses] or bad
    raise NonFiniteLoss(bad or ["a loss on another process"])


class BadStepGuard:
    """Runs a task's step; a :class:`NonFiniteLoss` is logged (terms, epoch, step), recorded in the
    metrics log, and returns no losses; ``max_bad`` in a row raise :class:`NonFiniteError`."""

    def __init__(
        self,
        max_bad: int,
        log: Callable[[str], None],
        record: Callable[[dict[str, Any]], None],
        run: RunDir,
    ) -> None:
        self.max_bad, self.log, self.record, self.run = max_bad, log, record, run
        self.in_a_row = 0

    def call(self, where: tuple[int, int, int], step: Callable[..., dict[str, Any]], *args: Any) -> dict:
        """``step(*args)`` at ``where`` = (epoch, step in the epoch, global step), 1-based."""
        try:
            losses = step(*args)
        except NonFiniteLoss as e:
            return self._skipped(e.terms, *where)
        self.in_a_row = 0
        return losses

    def _skipped(self, terms: list[str], epoch: int, step: int, global_step: int) -> dict:
        self.in_a_row += 1
        self.record({"type": "nonfinite", "epoch": epoch, "step": global_step, "terms": terms})
        grads = [t.removeprefix("grad:") for t in terms if t.startswith("grad:")]
        kind, names = ("gradient", grads) if len(grads) == len(terms) else ("loss", terms)
        what = (
            f"non-finite {kind} ({', '.join(names)}) at epoch {epoch} step {step} (global step {global_step})"
        )
        if self.in_a_row >= self.max_bad:
            last = self.run.candidates()
            kept = f"the last good checkpoint is kept: {last[0]}" if last else "no checkpoint was written"
            raise NonFiniteError(
                f"training stopped: {self.in_a_row} steps in a row had a non-finite loss, the last {what}; {kept}"
            )
        self.log(f"warning: {what}; update skipped ({self.in_a_row}/{self.max_bad} in a row)")
        return {}
