"""BYOL without batch statistics: BN removed or replaced, BYOL vs SimCLR (Richemond et al. 2020,
arXiv 2010.10241; Fetterman & Albrecht 2020). Not in `reproduce`'s default set.
Usage: python sweeps/normalization.py --preset imagenet-300 [--seeds 3] [--dry-run] [--resume]
       ray submit cluster/gpu.yaml sweeps/normalization.py --preset imagenet-300
"""

from byol_ray.cli.sweep import run_sweep_cli
from byol_ray.experiments.normalization import GRID

if __name__ == "__main__":
    raise SystemExit(run_sweep_cli(GRID))
