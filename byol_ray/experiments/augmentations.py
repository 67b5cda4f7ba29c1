"""Fig. 3b: BYOL and SimCLR with augmentations removed, and over colour strength [P Fig. 3b].

`recipe` cells are the paper's removals; `strength` cells scale the colour-jitter magnitudes
(strength 1.0 is the baseline recipe cell).
"""

from byol_ray.core.config import AUGMENT_RECIPES
from byol_ray.jobs.sweep.run import Cell, Grid

STRENGTHS = (0.0, 0.5, 1.5)
# cpu-mini's digits are grey: hue and saturation jitter do nothing there, so its strength axis
# would show noise only.
REDUCED = {"cpu-mini": (("baseline", "crop_only"), ())}


def cells(preset: str) -> list[Cell]:
    """Each removal recipe and each strength, for BYOL and SimCLR."""
    recipes, strengths = REDUCED.get(preset, (AUGMENT_RECIPES, STRENGTHS))
    out = []
    for method in ("byol", "simclr"):
        out += [Cell(method, "recipe", r, (f"augment.recipe={r}",)) for r in recipes]
        out += [Cell(method, "strength", f"{s:g}", (f"augment.strength={s}",))
                for s in strengths]
    return out


GRID = Grid("augmentations", "Fig. 3b: top-1 with augmentations removed, BYOL vs SimCLR",
            cells)
