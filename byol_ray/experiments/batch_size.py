"""Fig. 3a: BYOL and SimCLR over the batch size B [P §5, Fig. 3a], by the paper's protocol.

Every cell keeps the preset's optimiser batch (`data.batch_size`, 4096 on ImageNet), learning
rate, schedule and EMA: for B = batch / N the paper averages the gradients of N batches of B in
parallel [P §5 "Batch size"], so only what a batch of B computes by itself changes, its BN
statistics and SimCLR's negatives (`data.group_size=B`). Batches above the preset's are left out.
"""

from byol_ray.core.presets import get_preset
from byol_ray.jobs.sweep.run import Cell, Grid

PAPER = (4096, 2048, 1024, 512, 256, 128, 64)
REDUCED = {"cpu-mini": (256, 64)}  # digits: 1437 training images


def cells(preset: str) -> list[Cell]:
    """BYOL and SimCLR at each batch B up to the preset's (B = the preset's: no groups)."""
    batch = get_preset(preset).data.batch_size
    return [
        Cell(method, "batch_size", str(b), (f"data.group_size={b}",) if b < batch else ())
        for method in ("byol", "simclr")
        for b in REDUCED.get(preset, PAPER) if b <= batch
    ]


GRID = Grid("batch_size", "Fig. 3a: top-1 against batch size, BYOL vs SimCLR", cells)
