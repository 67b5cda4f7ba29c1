"""Table 5a: the target network's decay rate tau_base [P §5, Table 5a], each row under the
cosine schedule tau -> 1 [P §3] except tau = 0 (stop gradient of online), held constant as the
table's footnote says (byol_ray/experiments/ema_decay.py).
Usage (a checkout): python sweeps/ema_decay.py --preset imagenet-300 [--seeds 3] [--dry-run]
       ray submit cluster/gpu.yaml sweeps/ema_decay.py --preset imagenet-300
The same from an installed wheel: byol-ray sweep ema_decay --preset imagenet-300 [...]
"""

from byol_ray.cli.sweep import run_sweep_cli
from byol_ray.experiments.ema_decay import GRID

if __name__ == "__main__":
    raise SystemExit(run_sweep_cli(GRID))
