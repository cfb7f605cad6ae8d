"""An app that cannot be loaded gets a one-line error that says what, where and what to do;
``--traceback`` shows the whole trace."""

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


def _bullworker(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bullworker", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_factory_that_raises(tmp_path: Path) -> None:
    (tmp_path / "factory_app.py").write_text("def make_app():\n    raise ValueError('boom')\n")
    result = _bullworker(tmp_path, "queue", "AnyJob", "--app", "factory_app:make_app")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: the app factory factory_app:make_app raised ValueError: boom (factory_app.py:2)"
    ]


def test_a_module_that_is_not_there_says_where_it_looked(tmp_path: Path) -> None:
    result = _bullworker(tmp_path, "queue", "AnyJob", "--app", "myapp")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: cannot import 'myapp': module not found (looked in ")
    assert str(tmp_path) in line and "PYTHONPATH" in line


def test_a_missing_package_of_the_app(tmp_path: Path) -> None:
    (tmp_path / "needs_app.py").write_text("import not_installed_anywhere\n")
    result = _bullworker(tmp_path, "queue", "AnyJob", "--app", "needs_app")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "error: importing 'needs_app' failed: ModuleNotFoundError: "
        "No module named 'not_installed_anywhere' (needs_app.py:1); is it installed"
    )


def test_bad_settings_while_importing_are_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "config_app.py").write_text(
        "from bullworker import AppConfig, create_app\n\n"
        "app = create_app(config=AppConfig(environ={'REDIS_PORT': 'abc'}))\n"
    )
    result = _bullworker(tmp_path, "queue", "AnyJob", "--app", "config_app")
    assert result.returncode == 4
    [line] = result.stderr.splitlines()
    assert line.startswith("error: REDIS_PORT='abc' is not a valid int")


def test_traceback_prints_the_whole_trace(tmp_path: Path) -> None:
    source, _ = MODULES["raising_app"]
    (tmp_path / "raising_app.py").write_text(source)
    result = _bullworker(tmp_path, "--traceback", "queue", "AnyJob", "--app", "raising_app")
    assert result.returncode == 2
    assert "Traceback (most recent call last):" in result.stderr
    assert 'raise RuntimeError("DATABASE_URL is not set")' in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: importing 'raising_app' failed: RuntimeError")
