"""The benchmark scripts stop with one line, not a traceback, when their data is not where they were told."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize("script, args, missing", [
    ("quality_semble.py", ["--bench", "{tmp}"], "{tmp}/semble/repos.json not found: pass --bench"),
    ("quality_swebench.py", ["--bench", "{tmp}"], "{tmp}/swebench/lite_dev.jsonl not found: pass --bench"),
    ("prediction.py", ["--bench", "{tmp}", "--skip-git"], "{tmp}/swebench/lite_dev.jsonl not found: pass --bench"),
    ("prediction.py", ["--bench", "{tmp}", "--skip-traces"], "no {tmp}/nextfile/*_commits.jsonl: pass --bench"),
    ("prediction.py", ["--bench", "{tmp}", "--skip-git", "--graphs", "light", "--vectors"],
     "--vectors needs --graphs index"),
    ("perf.py", ["--queries", "{tmp}/q.jsonl", "--corpus", "{tmp}"], "{tmp}/q.jsonl not found: pass --queries"),
])
def test_a_missing_data_file_is_named_in_one_line(tmp_path, script, args, missing):
    args = [a.format(tmp=tmp_path) for a in args]
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(missing.format(tmp=tmp_path))
