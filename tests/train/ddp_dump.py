"""Run under torchrun by test_ddp: `mspn train ARGS...` whose every rank then dumps its final
weights to DUMP/rank<R>.pt, so the test can compare the ranks (only rank 0 writes checkpoints).

    python -m torch.distributed.run ... tests/train/ddp_dump.py DUMP train ARGS...
"""
import sys
from pathlib import Path

import torch

from mspn.cli import main
from mspn.train import loop


def _run_and_dump(dump: Path):
    original = loop.Trainer._run

    def run(self):
        result = original(self)
        state = {"model": self.model.state_dict(),
                 **{k: m.state_dict() for k, m in self.stage.extra_modules().items()}}
        dump.mkdir(parents=True, exist_ok=True)
        torch.save(state, dump / f"rank{self.env.rank}.pt")
        return result
    return run


if __name__ == "__main__":
    loop.Trainer._run = _run_and_dump(Path(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
