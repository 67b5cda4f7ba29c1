"""The table kit every rebuilt table is made of: pure pandas, no MLflow, no experiment.

`cells` averages tidy trial runs over seeds, `verdicts` compares shapes beyond the seeds'
noise, `reference` holds the paper's values (`reference.csv`), `table` is what each builder in
`byol_ray.experiments` composes. `byol_ray.report` reads the runs and renders the tables."""
