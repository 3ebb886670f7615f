"""The persona experiment's options: a light module (no JAX import), so the CLI can type its flags cheaply."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.errors import UserError


@dataclasses.dataclass(frozen=True)
class EMExperimentConfig:
    """Sizes of every stage; the defaults run on a 2-core CPU in well under an hour with SmolLM2-135M."""

    model: str = "smollm2-135m-instruct"  # policy: known name, HF directory or .gguf
    out: Path = Path("runs/persona")  # results, stores, SAE, figures
    layer: int = 12  # residual layer of the direction, the SAE and the monitor (SmolLM2: 30 layers)
    seed: int = 0  # data, sampling and SAE seed
    n_bad: int = 256  # narrow SFT chats (subtly wrong finance advice)
    sft_steps: int = 48  # narrow SFT optimizer steps
    sft_batch: int = 8  # chats per SFT step
    sft_lr: float = 5e-5  # constant AdamW learning rate (both SFT phases)
    checkpoints: tuple[int, ...] = (0, 4, 8, 16, 32, 48)  # SFT steps at which everything is measured
    n_realign: int = 160  # benign re-alignment chats
    realign_steps: int = 20  # re-alignment optimizer steps
    realign_checkpoints: tuple[int, ...] = (10, 20)  # re-alignment steps at which everything is measured
    em_samples: int = 4  # sampled answers per EM question (fresh-answer projection, judge)
    max_new_tokens: int = 64  # answer length of sampled EM answers
    n_pref: int = 16  # held-out finance prompts for the narrow preference
    judge: bool = True  # judge sampled EM answers 0-100 (first and last checkpoint of each phase)
    judge_model: str | None = None  # None: the base model itself (weak at 135M; reported as is)
    sae_width: int = 2304  # SAE latents (4 x 576 for SmolLM2)
    sae_k: int = 32  # active latents per token
    sae_steps: int = 600  # SAE optimizer steps
    sae_batch: int = 512  # SAE rows per step
    max_prompt_len: int = 128  # SFT context tokens
    max_response_len: int = 96  # SFT answer tokens
    top_latents: int = 5  # latents tracked over checkpoints

    def __post_init__(self):
        object.__setattr__(self, "checkpoints", tuple(sorted({0, *self.checkpoints})))
        object.__setattr__(self, "realign_checkpoints", tuple(sorted(set(self.realign_checkpoints))))
        if self.checkpoints[-1] != self.sft_steps or any(c < 0 for c in self.checkpoints):
            raise UserError(f"checkpoints: expected steps in [0, sft_steps] ending at sft_steps={self.sft_steps}, "
                            f"got {self.checkpoints}")
        if self.realign_checkpoints and (self.realign_checkpoints[-1] != self.realign_steps
                                         or self.realign_checkpoints[0] < 1):
            raise UserError(f"realign_checkpoints: expected steps in [1, realign_steps={self.realign_steps}] ending "
                            f"at realign_steps, got {self.realign_checkpoints}")
        for f in ("n_bad", "sft_batch", "em_samples", "max_new_tokens", "n_pref", "sae_steps", "top_latents"):
            if getattr(self, f) < 1:
                raise UserError(f"{f}: expected >= 1, got {getattr(self, f)}")
