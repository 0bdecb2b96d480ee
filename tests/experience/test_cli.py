"""`blacksoil experience stats|export|purge` and `blacksoil bench replay` (small sizes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blacksoil.cli import app
from blacksoil.config import settings
from blacksoil.contracts import ExperienceEvent
from blacksoil.experience.anonymizer import Anonymizer
from blacksoil.experience.store import ExperienceStore, default_url


def test_stats_export_purge(tmp_path: Path, anonymizer: Anonymizer) -> None:
    store = ExperienceStore(default_url(settings().home), anonymizer=anonymizer)
    store.ingest(ExperienceEvent(kind="model_call", tenant="cli-t", session_id="s", messages=[{"role": "user",
                                                                                               "content": "hi"}]))
    store.close()
    runner = CliRunner()
    r = runner.invoke(app, ["experience", "stats"])
    assert r.exit_code == 0 and "cli-t" in r.output
    out = tmp_path / "x.jsonl"
    r = runner.invoke(app, ["experience", "export", "--tenant", "cli-t", "--format", "jsonl", "--out", str(out)])
    assert r.exit_code == 0 and "wrote 1 rows" in r.output
    assert json.loads(out.read_text())["messages"][0]["content"] == "hi"
    r = runner.invoke(app, ["experience", "export", "--tenant", "cli-t", "--format", "xml", "--out", str(out)])
    assert r.exit_code != 0 and "xml" in str(r.exception)
    r = runner.invoke(app, ["experience", "purge", "--tenant", "cli-t"], input="n\n")
    assert r.exit_code != 0
    r = runner.invoke(app, ["experience", "purge", "--tenant", "cli-t", "--yes"])
    assert r.exit_code == 0 and "model_calls: 1" in r.output
    r = runner.invoke(app, ["experience", "stats", "--tenant", "cli-t"])
    assert r.exit_code == 0


def test_bench_replay_prints_json_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = tmp_path / "bench.md"
    monkeypatch.setenv("BLACKSOIL_BENCH_DOC", str(doc))
    r = CliRunner().invoke(app, ["bench", "replay", "--items", "20000", "--seconds", "0.3", "--inserts", "200",
                                 "--no-postgres", "--write-doc"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output.strip().splitlines()[-1])
    assert result["replay_items"] == 20000 and result["samples_per_s"] > 1000
    assert result["inserts_per_s_sqlite"] > 0 and result["inserts_per_s_postgres"] is None
    assert "Experience replay and store" in doc.read_text()
    assert (tmp_path / "img" / "replay_sampling.png").stat().st_size > 1000
    r = CliRunner().invoke(app, ["bench", "replay", "--items", "10", "--batch", "256"])
    assert r.exit_code != 0 and "items" in str(r.exception)


def test_import_gateway_jsonl(tmp_path: Path) -> None:
    from blacksoil.experience.sink import JsonlSink

    path = tmp_path / "experience.jsonl"
    sink = JsonlSink(path)
    ev = ExperienceEvent(kind="model_call", tenant="imp", messages=[{"role": "user", "content": "mail a.b@gmail.com"}])
    sink.emit(ev)
    sink.close()
    runner = CliRunner()
    r = runner.invoke(app, ["experience", "import", str(path)])
    assert r.exit_code == 0 and "read 1 events, 1 new" in r.output
    r = runner.invoke(app, ["experience", "import", str(path)])
    assert "read 1 events, 0 new" in r.output
    r = runner.invoke(app, ["experience", "export", "--tenant", "imp", "--out", str(tmp_path / "o.jsonl")])
    assert "<EMAIL_ADDRESS>" in (tmp_path / "o.jsonl").read_text()
    path.write_text("not json\n")
    r = runner.invoke(app, ["experience", "import", str(path)])
    assert r.exit_code != 0 and "not an ExperienceEvent" in str(r.exception)
