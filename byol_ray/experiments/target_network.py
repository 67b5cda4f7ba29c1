"""Table 5b: predictor x target network x contrastive weight beta, and SimCLR [P Table 5b].

beta weights a contrastive term (temperature 0.1); "no target network" makes the target side
the online projection itself, with gradients, as in SimCLR.
"""

from byol_ray.jobs.sweep.run import Cell, Grid

# (predictor, target network, beta) in the paper's row order.
PAPER = [(True, True, 0), (True, True, 1), (False, True, 1), (False, False, 1),
         (True, False, 1), (True, False, 0), (False, True, 0), (False, False, 0)]
REDUCED = {"cpu-mini": [(True, True, 0), (False, True, 0), (True, False, 0), (False, False, 1)]}


def cells(preset: str) -> list[Cell]:
    """One BYOL-variant cell per row, plus SimCLR itself."""
    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    rows = [
        Cell("byol", "target_network", f"pred={yes(p)},target={yes(t)},beta={b}",
             (f"method.predictor={p}", f"method.target_network={t}", f"method.beta={b}",
              "method.temperature=0.1"))
        for p, t, b in REDUCED.get(preset, PAPER)
    ]
    return [*rows, Cell("simclr", "target_network", "simclr", ("method.temperature=0.1",))]


GRID = Grid("target_network", "Table 5b: predictor, target network and beta", cells)
