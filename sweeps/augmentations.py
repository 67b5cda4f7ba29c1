"""Fig. 3b: BYOL and SimCLR with augmentations removed, and over colour strength [P Fig. 3b].
Usage: python sweeps/augmentations.py --preset imagenet-300 [--seeds 3] [--dry-run]
       ray submit cluster/gpu.yaml sweeps/augmentations.py --preset imagenet-300
"""

from byol_ray.cli.sweep import run_sweep_cli
from byol_ray.experiments.augmentations import GRID

if __name__ == "__main__":
    raise SystemExit(run_sweep_cli(GRID))
