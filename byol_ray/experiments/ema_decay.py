"""Table 5a: the target network's decay rate tau, held constant [P §5, Table 5a].

tau = 1 never updates the target (a fixed random network); tau = 0 copies the online network
at every step (no EMA): both should fall far below tau around 0.99.
"""

from byol_ray.jobs.sweep.run import Cell, Grid

PAPER = (1.0, 0.999, 0.996, 0.99, 0.9, 0.0)  # Table 5a, plus the 1000-epoch run's 0.996
REDUCED = {"cpu-mini": (1.0, 0.99, 0.0)}


def cells(preset: str) -> list[Cell]:
    """BYOL at each constant tau."""
    return [
        Cell("byol", "tau_base", f"{tau:g}",
             (f"method.tau_base={tau}", "method.tau_schedule=constant"))
        for tau in REDUCED.get(preset, PAPER)
    ]


GRID = Grid("ema_decay", "Table 5a: top-1 against the target's EMA decay rate", cells)
