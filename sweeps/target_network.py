"""Table 5b: predictor x target network x contrastive weight beta, and SimCLR [P Table 5b].
Usage: python sweeps/target_network.py --preset imagenet-300 [--seeds 3] [--dry-run]
       ray submit cluster/gpu.yaml sweeps/target_network.py --preset imagenet-300
"""

from byol_ray.cli.sweep import run_sweep_cli
from byol_ray.experiments.target_network import GRID

if __name__ == "__main__":
    raise SystemExit(run_sweep_cli(GRID))
