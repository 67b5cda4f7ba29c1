"""`python -m byol_ray.jobs.pretrain --preset P [--set KEY=VALUE ...] [--tracking-uri URI]
[--storage FOLDER]`: the pretraining loop as a plain Python process, without Ray (what
`byol-ray train --no-ray` runs): read and debug it top to bottom; tracked in MLflow as any run.
"""

from __future__ import annotations

import argparse
import sys

from byol_ray.core.config import ConfigError, validate
from byol_ray.core.presets import preset_config
from byol_ray.jobs.pretrain.driver import run_pretraining
from byol_ray.jobs.pretrain.summary import print_run_summary
from byol_ray.runtime.tracking import store


def main(argv: list[str] | None = None) -> int:
    """Parse, resolve the tracking URI once, run without Ray, print the run's summary."""
    parser = argparse.ArgumentParser(prog="python -m byol_ray.jobs.pretrain",
                                     description=__doc__)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE")
    parser.add_argument("--tracking-uri", default="")
    parser.add_argument("--storage", default="")
    args = parser.parse_args(argv)
    try:
        cfg = validate(preset_config(args.preset, args.overrides))
        uri = store.resolve_tracking_uri(args.tracking_uri or cfg.tracking.tracking_uri)
        result = run_pretraining(cfg, uri, args.storage or None, ray=False)
    except ConfigError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    print_run_summary(result.run_id, uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())
