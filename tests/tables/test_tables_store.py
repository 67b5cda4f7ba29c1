"""`byol-ray tables` against a real MLflow sqlite store written with MlflowClient (no Ray)."""

import mlflow
import pandas as pd
from PIL import Image

from byol_ray.cli import main as cli
from byol_ray.report import print_tables, write_report
from byol_ray.report.runs import load_runs

TABLES = ("table_5a", "table_5b", "fig_3a", "fig_3b", "fig_3b_strength", "baseline")


def run_cli(argv: list[str]) -> int:
    """`byol-ray ARGV` through the real command line (`byol_ray.cli.main`)."""
    return cli.main(argv)


def test_tables_command_writes_every_table_figure_and_the_report(store_uri, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(["tables", "--tracking-uri", store_uri, "--preset", "cpu-mini",
                    "--out", str(out)]) == 0
    for key in TABLES:
        for ext in ("md", "csv", "tex"):
            assert (out / f"{key}.{ext}").stat().st_size > 0, f"{key}.{ext}"
    for png in ("fig_3a.png", "fig_3b.png"):
        with Image.open(out / png) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 600
    report = (out / "report.md").read_text()
    assert "trial runs: 49 (3 FAILED, 45 FINISHED, 1 RUNNING)" in report
    assert "![Fig. 3a" in report and "(fig_3a.png)" in report and "(fig_3b.png)" in report
    for key in TABLES:
        assert (out / f"{key}.md").read_text().split("\n")[0] in report
    assert report.count("Verdict: ") == 2 * len(TABLES)  # the summary and under each table
    csv = pd.read_csv(out / "table_5a.csv", dtype={"row": str}).set_index("row")
    assert pd.isna(csv.loc["0.999", "mean"]) and csv.loc["0.999", "status"] == "pending"
    assert csv.loc["0.99", "n_seeds"] == 3 and csv.loc["0.99", "paper_top1"] == 72.5
    assert csv.loc["0", "n_collapsed"] == 2
    assert r"\begin{table}" in (out / "fig_3b.tex").read_text()
    printed = capsys.readouterr().out
    assert "49 trial runs read" in printed and f"wrote {out / 'report.md'}" in printed
    assert printed.count("Verdict: agrees with the paper.") == len(TABLES)


def test_filters_by_experiment_and_metric(store_uri, tmp_path):
    out = tmp_path / "knn"
    assert run_cli(["tables", "--tracking-uri", store_uri, "--experiment", "ema_decay/cpu-mini",
                    "--metric", "knn", "--out", str(out)]) == 0
    ema = pd.read_csv(out / "table_5a.csv", dtype={"row": str}).set_index("row")
    assert ema.loc["0.99", "mean"] == 90.0  # the kNN top-1 (linear - 1 in these runs)
    assert ema.loc["0.99", "protocol"] == "kNN (k=20), online, digits test split"
    batch = pd.read_csv(out / "fig_3a.csv")
    assert set(batch["status"]) == {"missing"}  # another experiment: not read
    assert not (out / "fig_3b_strength.csv").exists()


def test_bad_input_exits_2_naming_the_option(store_uri, tmp_path, capsys):
    out = str(tmp_path / "x")
    assert run_cli(["tables", "--tracking-uri", store_uri, "--out", out]) == 2
    assert "--preset: the runs come from several presets (cifar10, cpu-mini)" in (
        capsys.readouterr().err)
    assert run_cli(["tables", "--tracking-uri", store_uri, "--experiment", "nope",
                    "--out", out]) == 2
    assert "--experiment: no experiment named nope" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path}/none.db"
    assert run_cli(["tables", "--tracking-uri", missing, "--out", out]) == 2
    assert "no MLflow store at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()  # reading never creates a store


def test_library_entry_points_read_the_env_var_and_leave_mlflow_as_it_was(
        store_uri, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BYOL_RAY_TRACKING_URI", store_uri)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = mlflow.get_tracking_uri()
    report = write_report(None, tmp_path / "lib", preset="cpu-mini")
    assert report == tmp_path / "lib" / "report.md" and report.is_file()
    tables = print_tables(preset="cpu-mini", sweeps=["ema_decay-cpu-mini"])
    printed = capsys.readouterr().out
    # cpu-mini's default metric is the few-label kNN (linear - 2 in these runs)
    assert "Table 5a: EMA decay rate" in printed and "89.0 ± 1.0 (n=3)" in printed
    assert set(tables["fig_3a"].data["status"]) == {"missing"}  # only the ema_decay sweep
    assert len(load_runs(preset="cifar10")) == 1
    assert mlflow.get_tracking_uri() == before
    assert "MLFLOW_TRACKING_URI" not in __import__("os").environ
