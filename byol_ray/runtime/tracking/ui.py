"""Links into the MLflow UI that open where they say: an experiment's runs table.

Since MLflow 3.18 the UI's GenAI / Model-training switch is one global setting of the browser
(default GenAI), and an experiment's `mlflow.experimentKind` tag no longer decides: a link to
an experiment opens on "Send your first trace" unless it names the model-training workflow in
its query (`workflowType=machine_learning`). Every "browse" hint the commands print is built
here (tests/test_ui_links.py opens one in headless Chromium). No MLflow import: plain text.
"""

from __future__ import annotations

WORKFLOW_QUERY = "workflowType=machine_learning"  # the UI's model-training view (MLflow 3.18)
UI_DEFAULT = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default (host and port)


def runs_page(ui: str, experiment_id: str) -> str:
    """The URL of the experiment's runs table on the MLflow UI at `ui` (scheme://host:port)."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?{WORKFLOW_QUERY}"


def browse_hint(tracking_uri: str, experiment_id: str) -> str:
    """'browse: URL' where the store is a server; otherwise the `mlflow ui` command that serves
    the store, and on a line of its own (to copy as it is) the URL to open then."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"browse: {runs_page(tracking_uri, experiment_id)}"
    return (f"browse: mlflow ui --backend-store-uri {tracking_uri}\n"
            f"  then open {runs_page(UI_DEFAULT, experiment_id)}")
