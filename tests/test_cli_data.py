"""`fedistream import | export | backup` as a person runs them: subprocesses, exit codes, output."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from fedistream.cli_data import ProgressBar, human_size

REPO_ROOT = Path(__file__).resolve().parent.parent

# A small stream in import format: an epigraph, a titled essay with a code block, a list.
STREAM = """\
date: 2023-02-01T08:00Z
> Measure twice.
>
> — workshop wall

---
# Config files
date: 2023-03-15T18:30:00+01:00
cw: yaml

Front matter starts and ends with dashes:

```yaml
---
draft: true
---
```

---
date: 2023-04-01
Two rules:

1. Ship small.
2. Ship often.
"""


def run(
    data_dir: Path, *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDISTREAM_")}
    env["FEDISTREAM_OWNER_PASSWORD"] = "a long enough test password"
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "fedistream.cli", "--data-dir", str(data_dir), *args],
        input=stdin, capture_output=True, text=True, env=env, cwd=cwd or data_dir.parent,
        timeout=60,
    )  # fmt: skip


def test_import_then_reimport_reports_counts_and_progress(tmp_path: Path) -> None:
    source = tmp_path / "stream.md"
    source.write_text(STREAM, encoding="utf-8")
    data = tmp_path / "data"
    first = run(data, "import", str(source))
    assert first.returncode == 0, first.stderr
    assert "imported 3, skipped as duplicates 0, empty 0, failed 0" in first.stdout
    assert "password" not in first.stdout.lower()
    # stderr is a pipe here, so progress comes as plain lines rather than a redrawn bar
    assert "\r" not in first.stderr
    assert first.stderr.splitlines()[-1] == "import: 100% (3/3)"
    again = run(data, "import", str(source))
    assert again.returncode == 0
    assert "imported 0, skipped as duplicates 3, empty 0, failed 0" in again.stdout


def test_bad_chunks_fail_the_exit_code_but_the_rest_import(tmp_path: Path) -> None:
    source = tmp_path / "mixed.txt"
    source.write_bytes(
        b"\xef\xbb\xbfgood one\r\n---\r\ndate: someday\r\nbad date\r\n"
        b"---\r\n\r\n---\r\ngood two\r\n"
    )
    result = run(tmp_path / "data", "import", str(source))
    assert result.returncode == 1
    assert "imported 2, skipped as duplicates 0, empty 1, failed 1" in result.stdout
    assert "thought 2 (line 3, \"date: someday\"): bad date 'someday'" in result.stdout


def test_import_from_stdin(tmp_path: Path) -> None:
    result = run(tmp_path / "data", "import", "-", stdin="one\n---\ntwo\n")
    assert result.returncode == 0, result.stderr
    assert "imported 2," in result.stdout


def test_import_of_a_missing_or_binary_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = run(tmp_path / "data", "import", str(tmp_path / "nope.md"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    binary = tmp_path / "img.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    result = run(tmp_path / "data", "import", str(binary))
    assert result.returncode == 2 and "not UTF-8" in result.stderr


def test_export_to_stdout_imports_into_an_empty_instance_identically(tmp_path: Path) -> None:
    source = tmp_path / "stream.md"
    source.write_text(STREAM, encoding="utf-8")
    assert run(tmp_path / "one", "import", str(source)).returncode == 0
    exported = run(tmp_path / "one", "export")
    assert exported.returncode == 0, exported.stderr
    assert "exported 3 thoughts to standard output" in exported.stderr
    assert exported.stdout.startswith("date: 2023-02-01T08:00:00Z\n\n> Measure twice.")
    assert "cw: yaml\n# Config files\n" in exported.stdout
    back = run(tmp_path / "two", "import", "-", stdin=exported.stdout)
    assert "imported 3," in back.stdout
    assert run(tmp_path / "two", "export").stdout == exported.stdout


def test_export_jsonl_and_split_to_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    source = tmp_path / "stream.md"
    source.write_text(STREAM, encoding="utf-8")
    run(data, "import", str(source))
    out = tmp_path / "stream.jsonl"
    result = run(data, "export", "--format", "jsonl", "--output", str(out))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert [r["created_at"] for r in records] == [
        "2023-02-01T08:00:00Z", "2023-03-15T17:30:00Z", "2023-04-01T00:00:00Z",
    ]  # fmt: skip
    assert records[1]["content_warning"] == "yaml" and records[1]["title"] == "Config files"
    assert records[0]["url"] == f"http://127.0.0.1:8000/p/{records[0]['id']}"

    folder = tmp_path / "files"
    split = run(data, "export", "--split", "--output", str(folder))
    assert split.returncode == 0, split.stderr
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        f"{r['created_at'][:10]}-{r['id']}.md" for r in records
    ]  # fmt: skip
    assert (
        (folder / names[1])
        .read_text("utf-8")
        .startswith("date: 2023-03-15T17:30:00Z\ncw: yaml\n# Config files\n\nFront matter")
    )


def test_export_usage_errors(tmp_path: Path) -> None:
    assert run(tmp_path / "empty", "export").returncode == 2  # no database there
    data = tmp_path / "data"
    run(data, "import", "-", stdin="x")
    no_dir = run(data, "export", "--split")
    assert no_dir.returncode == 2 and "--output" in no_dir.stderr
    jsonl_split = run(data, "export", "--split", "--format", "jsonl", "-o", str(tmp_path / "d"))
    assert jsonl_split.returncode == 2
    folder = run(data, "export", "--output", str(tmp_path))
    assert folder.returncode == 2 and "is a folder" in folder.stderr


def test_backup_copies_checks_and_refuses_to_overwrite(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run(data, "import", "-", stdin="one\n---\ntwo\n")
    target = tmp_path / "backup.sqlite3"
    first = run(data, "backup", str(target))
    assert first.returncode == 0, first.stderr
    assert f"Backed up to {target}: " in first.stdout
    assert "2 thoughts; integrity check ok" in first.stdout
    assert human_size(target.stat().st_size) in first.stdout
    with sqlite3.connect(target) as copy:
        assert copy.execute("SELECT count(*) FROM posts").fetchone() == (2,)
    refused = run(data, "backup", str(target))
    assert refused.returncode == 1 and "already exists" in refused.stderr
    forced = run(data, "backup", str(target), "--force")
    assert forced.returncode == 0, forced.stderr


def test_progress_bar_redraws_one_line_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    bar = ProgressBar(term, "import", width=10)
    for done in range(1, 401):
        bar(done, 400)
    bar.close()
    text = term.getvalue()
    assert text.count("\r") == 101  # one redraw per percent (0..100), not per thought
    assert text.endswith("\rimport [##########] 100% 400/400\n")
    assert "\rimport [#####-----]  50% 200/400" in text


def test_progress_in_a_log_is_a_line_per_tenth() -> None:
    log = io.StringIO()
    bar = ProgressBar(log, "import")
    for done in range(1, 1001):
        bar(done, 1000)
    bar.close()
    lines = log.getvalue().splitlines()
    assert lines == [f"import: {p}% ({p * 10}/1000)" for p in range(10, 101, 10)]


def test_human_size() -> None:
    assert [human_size(n) for n in (512, 2048, 5 * 1024**2, 3 * 1024**3)] == [
        "512 bytes", "2.0 KB", "5.0 MB", "3.0 GB",
    ]  # fmt: skip
