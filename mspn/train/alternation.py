"""The paper's adaptive alternation between discriminator and generator training. Pure, torch-free.

Windows hold the last ``window`` mean scores of D on fake and on real frames (scores of the batch
just trained on, whichever side trained). With mf, mr the window means:

- D phase (G frozen): train D while mf >= mr - |mr|/50 (D is losing: fakes score about as high
  as reals); leave early once the window is full and mf < mr - |mr|/100.
- G phase (D frozen): train G until the window is full and mf >= mr - |mr|/50.
- Training starts in the D phase, and each side trains at least one batch per phase: the
  decision for the next batch is made after a batch's scores are known.

Two bookkeepings (adv.alternation):
- ``per-video`` (the authors' adv_train.py, the default): at the start of each video the windows
  are re-seeded with one score 0 (``Alternation.for_video``), the seed counts in the means and in
  the window's length, so every video starts with a D phase and the window is full after
  ``window - 1`` batches.
- ``continuous``: the windows start empty once and run on across videos (``Alternation(window)``).

Usage: ``side = alt.phase`` -> train that side on one batch -> ``alt.update(fake, real)``.
Under DDP the scores must be all-reduced first, so every rank takes the same decision.
"""
from __future__ import annotations

from collections import deque

D, G = "D", "G"


class Alternation:
    def __init__(self, window: int = 3, phase: str = D, fake: list | None = None,
                 real: list | None = None):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if phase not in (D, G):
            raise ValueError(f"phase must be 'D' or 'G', got {phase!r}")
        self.window = window
        self.phase = phase
        self.fake: deque[float] = deque((float(v) for v in fake or ()), maxlen=window)
        self.real: deque[float] = deque((float(v) for v in real or ()), maxlen=window)

    @classmethod
    def for_video(cls, window: int = 3) -> Alternation:
        """The authors' state at the start of a video: D phase, both windows holding one 0."""
        return cls(window, D, [0.0], [0.0])

    @property
    def full(self) -> bool:
        return len(self.fake) == self.window

    def means(self) -> tuple[float, float]:
        """(mean fake, mean real) over the windows."""
        return sum(self.fake) / len(self.fake), sum(self.real) / len(self.real)

    def update(self, fake_score: float, real_score: float) -> str:
        """Record D's mean scores of the batch just trained on; return the side to train next."""
        self.fake.append(float(fake_score))
        self.real.append(float(real_score))
        mf, mr = self.means()
        d_losing = mf >= mr - abs(mr) / 50
        if self.phase == D:
            d_won_early = self.full and mf < mr - abs(mr) / 100
            if not d_losing or d_won_early:
                self.phase = G
        elif self.full and d_losing:
            self.phase = D
        return self.phase

    def state_dict(self) -> dict:
        """Plain lists and strings, so a checkpoint loads with weights_only=True."""
        return {"window": self.window, "phase": self.phase, "fake": list(self.fake),
                "real": list(self.real)}

    @classmethod
    def from_state(cls, state: dict) -> Alternation:
        return cls(int(state["window"]), str(state["phase"]), list(state["fake"]), list(state["real"]))
