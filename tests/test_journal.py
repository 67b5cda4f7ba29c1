"""The ordered on-disk buffer behind `RunLogger` (it knows nothing of MLflow: these
tests deliver to a list)."""

import json

from byol_ray.runtime.tracking.journal import Journal, drain, pending_records


class Flaky:
    """Delivers into `got`, failing the first `failures` calls (a server that is away)."""

    def __init__(self, failures: int = 0):
        self.got, self.failures = [], failures

    def __call__(self, record: dict) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("server away")
        self.got.append(record["n"])


def test_records_are_delivered_once_in_order_through_an_outage(tmp_path, capsys):
    sink = Flaky(failures=2)
    journal = Journal(tmp_path / "run.worker.jsonl", sink, label="test server")
    for n in range(5):
        journal.append({"n": n})
    assert journal.close(timeout_s=30)
    assert sink.got == [0, 1, 2, 3, 4]
    assert not (tmp_path / "run.worker.jsonl").exists()
    out = capsys.readouterr().out
    assert "test server unreachable (ConnectionError: server away)" in out and "back after" in out


def test_what_a_killed_writer_left_is_delivered_first_and_a_torn_line_skipped(tmp_path):
    path = tmp_path / "run.worker.jsonl"
    lines = [{"seq": 0, "n": 0}, {"seq": 1, "n": 1}, {"ack": 0}, {"seq": 2, "n": 2}]
    path.write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"seq": 3, "n"')  # torn
    assert [r["n"] for r in pending_records(path)] == [1, 2]
    sink = Flaky()
    journal = Journal(path, sink, label="test server")  # the restarted process
    journal.append({"n": 3})
    assert journal.close(timeout_s=30) and sink.got == [1, 2, 3]


def test_a_journal_given_up_on_keeps_its_records_for_a_later_drain(tmp_path, capsys):
    path = tmp_path / "run.worker.jsonl"
    journal = Journal(path, Flaky(failures=10**6), label="test server")
    journal.append({"n": 0})
    journal.append({"n": 1})
    assert not journal.close(timeout_s=1)
    assert f"2 record(s) kept in {path}" in capsys.readouterr().out
    assert drain(path, Flaky(failures=1)) == 2  # still away: nothing lost
    sink = Flaky()
    assert drain(path, sink) == 0 and sink.got == [0, 1] and not path.exists()
