"""Fig. 3a: BYOL and SimCLR over the global batch size [P §5, Fig. 3a].

The learning rate follows the batch (lr = base_lr x batch / 256). For the paper's gradient
accumulation (the target updated once every N batches) add `--set train.accumulate_steps=N`.
"""

from byol_ray.jobs.sweep.run import Cell, Grid

PAPER = (4096, 2048, 1024, 512, 256, 128, 64)
REDUCED = {"cpu-mini": (256, 64)}  # digits: 1437 training images


def cells(preset: str) -> list[Cell]:
    """BYOL and SimCLR at each batch size."""
    return [
        Cell(method, "batch_size", str(batch), (f"data.batch_size={batch}",))
        for method in ("byol", "simclr")
        for batch in REDUCED.get(preset, PAPER)
    ]


GRID = Grid("batch_size", "Fig. 3a: top-1 against batch size, BYOL vs SimCLR", cells)
