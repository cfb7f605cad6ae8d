"""An app module whose own code fails to import gets a one-line error that says where."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MODULES = {
    "raising_app": ('import os\n\nraise RuntimeError("DATABASE_URL is not set")\n', 3),
    "syntax_app": ("def broken(:\n    pass\n", 1),
    "bad_import_app": ("from os import nothing_here\n", 1),
}


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("raising_app", "RuntimeError: DATABASE_URL is not set"),
        ("syntax_app", "SyntaxError: invalid syntax"),
        ("bad_import_app", "ImportError: cannot import name 'nothing_here' from 'os'"),
    ],
)
def test_an_app_that_fails_to_import(tmp_path: Path, module: str, message: str) -> None:
    source, line = MODULES[module]
    (tmp_path / f"{module}.py").write_text(source)
    result = subprocess.run(
        [sys.executable, "-m", "bullworker", "queue", "AnyJob", "--app", module],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2  # as for every app that cannot be loaded
    [line_out] = result.stderr.splitlines()
    assert line_out.startswith(f"error: importing '{module}' failed: {message}")
    assert line_out.endswith(f"{module}.py:{line})")
    assert "Traceback" not in result.stderr
