"""Every MLflow access of byol-ray: `store` (which store, is it there), `run` (one run), `sweeps`
(parent and child runs), `logger` (writes via the `journal`), `queries` (reads across runs),
`ui` (links into the MLflow UI)."""
