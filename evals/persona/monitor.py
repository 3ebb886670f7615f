"""In-loop persona monitor: a learner hook that logs how the policy's own answers project on a direction.

Every `every` steps (and at step 0, the baseline) the hook answers a fixed set of probe prompts
(default: the eight emergent-misalignment questions)
greedily with the current weights, re-reads each answer teacher-forced, averages the residual at
the direction's layer over the answer tokens, and logs the projection on the unit direction:
`persona/<name>/projection` (mean), `.../projection_std`, and `.../delta` (change since the first
call). Wang et al. 2025 found such a projection rises before misbehaviour shows in samples, so it
is a cheap early warning during GRPO -- one batched generation and one forward per call.

Legend: B probe prompts, D model width.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data import persona_sets
from engine.errors import UserError
from evals.persona.capture import completion_means
from evals.persona.directions import Direction
from rl.sampler import Sampler, SamplingConfig
from models.tokenizer import encode_prompts


@dataclasses.dataclass(frozen=True)
class MonitorConfig:
    """The persona monitor of a GRPO run (`traitrl train --monitor.direction DIR.npz`): off without a direction."""

    direction: Path | None = None  # a saved persona direction (`traitrl persona direction`); None = no monitor
    every: int = 10  # learner steps between measurements (step 0 always measured)
    max_new_tokens: int = 48  # answer length per probe prompt
    name: str = "persona"  # metric prefix: persona/<name>/...

    def __post_init__(self):
        if self.every < 1 or self.max_new_tokens < 1 or not self.name:
            raise UserError("monitor: every >= 1, max_new_tokens >= 1 and a non-empty name expected")


class PersonaMonitor:
    """`hook(step, policy) -> metrics | None`, as `rl.learner.Learner(hooks=[...])` expects."""

    def __init__(self, direction: Direction, prompts: Sequence[list[dict]] | None = None,
                 cfg: MonitorConfig = MonitorConfig()):
        if prompts is None:  # default probes: the eight emergent-misalignment questions
            prompts = [[{"role": "user", "content": q}] for q in persona_sets.EM_QUESTIONS.values()]
        if not prompts:
            raise UserError("monitor: no probe prompts")
        self.direction, self.prompts, self.cfg = direction, list(prompts), cfg
        self.sampler = Sampler(SamplingConfig(temperature=0.0, max_new_tokens=cfg.max_new_tokens))
        self.baseline: float | None = None
        self._ids = None

    def measure(self, policy) -> np.ndarray:
        """[B] projection of each probe answer's mean residual on the unit direction."""
        if self._ids is None:
            self._ids = encode_prompts(policy.tokenizer, self.prompts)
        r = self.sampler(policy, self._ids)
        means = completion_means(policy, r.prompt_ids_BxL, r.prompt_mask_BxL, r.completion_ids_BxT,
                                 r.completion_mask_BxT, (self.direction.layer,))[self.direction.layer]
        return means @ self.direction.unit_D

    def __call__(self, step: int, policy) -> dict[str, float] | None:
        if step % self.cfg.every:
            return None
        proj = self.measure(policy)
        mean = float(proj.mean())
        if self.baseline is None:
            self.baseline = mean
        p = f"persona/{self.cfg.name}"
        return {f"{p}/projection": mean, f"{p}/projection_std": float(proj.std()), f"{p}/delta": mean - self.baseline}
