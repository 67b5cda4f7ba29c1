"""analysis/paper_tables.ipynb runs top to bottom against a real store given by env var."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "analysis" / "paper_tables.ipynb"


def test_notebook_runs_top_to_bottom_against_the_store(store_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("BYOL_RAY_TRACKING_URI", store_uri)
    monkeypatch.setenv("BYOL_RAY_PRESET", "cpu-mini")
    monkeypatch.setenv("BYOL_RAY_TABLES_OUT", str(tmp_path / "out"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get("outputs") for c in notebook.cells if c.cell_type == "code")
    source = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert "from byol_ray import report as tables" in source and "def " not in source  # no copies
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/markdown", ""))
                     for o in outputs)
    assert f"reading {store_uri}" in text
    assert "## Table 5a" in text and "Verdict: agrees with the paper." in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
    assert (tmp_path / "out" / "report.md").is_file()
    assert not (tmp_path / "mlflow.db").exists()
