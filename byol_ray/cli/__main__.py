"""`python -m byol_ray.cli`: the `byol-ray` command."""

from byol_ray.cli.main import main

raise SystemExit(main())
