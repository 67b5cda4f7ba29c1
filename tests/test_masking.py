"""One masking rule for secrets in URIs and settings (core/masking.py), and the places that show
or raise config without Ray or a server: show-config (yaml, json, --explain), a failing command's
error line, the driver's log file. The tracked run (params, tags, config.yaml) is in
test_masking_tracked.py."""

from __future__ import annotations

import logging

import pytest

from byol_ray.cli.main import main
from byol_ray.core.config import ConfigError
from byol_ray.core.masking import mask, mask_record, mask_tree

# Each kind of URI with a known secret, and what it is shown as.
URIS = {
    "http://alice:SECRET-HTTP@127.0.0.1:5000": "http://alice:***@127.0.0.1:5000",
    "postgresql+psycopg://mlflow:SECRET-PG@db:5432/mlflow":
        "postgresql+psycopg://mlflow:***@db:5432/mlflow",
    "s3://AKIDEXAMPLE:SECRET-S3@bucket/runs?endpoint_override=h:9000&scheme=http":
        "s3://AKIDEXAMPLE:***@bucket/runs?endpoint_override=h:9000&scheme=http",
    "s3://bucket/runs?access_key=AKID&secret_key=SECRET-S3Q&session_token=SECRET-STS":
        "s3://bucket/runs?access_key=***&secret_key=***&session_token=***",
    "https://mlflow.example/?token=SECRET-TOKEN&page=2": "https://mlflow.example/?token=***&page=2",
    "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKID%2F1&X-Amz-Signature=SECRET-SIG":
        "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***",
    "https://SECRET-GHTOKEN@github.com/org/repo": "https://***@github.com/org/repo",
}
SECRETS = ("SECRET-HTTP", "SECRET-PG", "SECRET-S3", "SECRET-S3Q", "SECRET-STS", "SECRET-TOKEN",
           "SECRET-SIG", "SECRET-GHTOKEN")


@pytest.mark.parametrize(("uri", "shown"), URIS.items())
def test_each_kind_of_uri_loses_its_secret_and_keeps_the_rest(uri, shown):
    assert mask(uri) == shown
    line = "error: cannot reach {!r}: refused"
    assert mask(line.format(uri)) == line.format(shown)
    assert mask(shown) == shown  # idempotent


@pytest.mark.parametrize("text", [
    "sqlite:////tmp/runs/mlflow.db", "file:///home/u/mlruns", "s3://bucket/prefix",
    "mail alice@example.org", "http://h/p?email=a@b.c&page=2", "monkey=1 key_id=2 design=3",
    "train.epochs=10 method.tau_base=0.996", "an override looks like section.key=value",
    "http://h/p?monkey=1&key_id=2"])
def test_text_without_a_secret_is_unchanged(text):
    assert mask(text) == text


def test_secret_settings_are_masked_by_name():
    assert mask("AWS_SECRET_ACCESS_KEY=abc MLFLOW_TRACKING_PASSWORD=def, x=1") == (
        "AWS_SECRET_ACCESS_KEY=*** MLFLOW_TRACKING_PASSWORD=***, x=1")
    tree = {"tracking": {"tracking_uri": "http://u:pw@h", "password": "pw", "token": ""},
            "list": ["http://u:pw@h", 3]}
    assert mask_tree(tree) == {"tracking": {"tracking_uri": "http://u:***@h", "password": "***",
                                            "token": ""}, "list": ["http://u:***@h", 3]}


def test_errors_and_log_records_are_masked():
    assert str(ConfigError("--tracking-uri", "http://u:SECRET-HTTP@h: no answer")) == (
        "--tracking-uri: http://u:***@h: no answer")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "store %s", ("http://u:pw@h",),
                               None)
    assert mask_record(record) and record.getMessage() == "store http://u:***@h"


@pytest.mark.parametrize("args", [[], ["--format", "json"], ["--explain"]])
def test_show_config_shows_no_secret(args, capsys):
    for uri in URIS:
        assert main(["show-config", "--preset", "cpu-mini", "--set",
                     f"tracking.tracking_uri={uri}", *args]) == 0
        out = capsys.readouterr().out
        assert "tracking_uri" in out and not any(s in out for s in SECRETS), out


def test_a_failing_command_shows_no_secret(tmp_path, capsys):
    """An unreachable server named with a password: the error line names it, masked."""
    uri = "http://alice:SECRET-HTTP@127.0.0.1:9"
    assert main(["train", "--preset", "cpu-mini", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert "http://alice:***@127.0.0.1:9" in err and "SECRET-HTTP" not in err, err
    assert main(["show-config", "--preset", "cpu-mini", "--set",
                 "tracking.experiment=http://u:SECRET-PG@h", "--set", "train.epochs=-1"]) == 2
    assert "SECRET" not in capsys.readouterr().err


def test_the_tracking_preflight_sends_a_uris_password_as_basic_auth_and_shows_it_masked():
    """`http://user:password@host` reaches the server as MLflow's client sends it (basic auth,
    not a host name with a password in it); an error names the URI masked."""
    import base64
    import http.server
    import threading

    from byol_ray.runtime.tracking.store import check_tracking_store

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            seen.append((self.headers.get("Host"), self.headers.get("Authorization")))
            self.send_response(200 if seen[-1][1] else 401)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        check_tracking_store(f"http://alice:SECRET-HTTP@127.0.0.1:{port}", attempts=1)
        expected = "Basic " + base64.b64encode(b"alice:SECRET-HTTP").decode()
        assert seen == [(f"127.0.0.1:{port}", expected)]
    finally:
        server.shutdown()
    with pytest.raises(ConfigError) as error:
        check_tracking_store(f"http://alice:SECRET-HTTP@127.0.0.1:{port}", attempts=1,
                             timeout_s=2)
    assert "SECRET" not in str(error.value) and "alice:***@127.0.0.1" in str(error.value)
