"""Fig. 3a: BYOL and SimCLR over the global batch size [P §5, Fig. 3a].
Usage: python sweeps/batch_size.py --preset imagenet-300 [--seeds 3] [--dry-run] [--resume]
       ray submit cluster/gpu.yaml sweeps/batch_size.py --preset imagenet-300
"""

from byol_ray.cli.sweep import run_sweep_cli
from byol_ray.experiments.batch_size import GRID

if __name__ == "__main__":
    raise SystemExit(run_sweep_cli(GRID))
