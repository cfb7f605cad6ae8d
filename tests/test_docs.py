"""Every fenced code block of README.md and docs/*.md is run or checked.

The blocks are read from the fences of each page; the word after the opening fence (its
language) decides what happens. No block is left out, and a language not listed here fails:

- ``python``: run in a fresh Python process, each block on its own, with ``APP_ENV=test`` (so
  ``queue_job`` sends nothing), the test Redis of tests/helpers.py as ``REDIS_URL``, a
  ``BULL_PREFIX`` of its own (deleted afterwards), ``SQLITE_PATH`` in a temporary directory, and
  the repository on ``PYTHONPATH``. Top-level ``await`` is allowed, as in an async function.
  A block whose first line names a file (``# tasks.py``) is also that file: it is written into the
  page's working directory, where the page's blocks run, so later blocks can import it. A block
  whose first line names a file under examples/ (``# examples/fastapi_app.py``) is part of that
  file: its other lines must appear in the file as they are, and the file is imported instead.
- ``sh``: commands, one a line (``\\`` continues one, ``#`` starts a comment), never run, except
  by the README tour below. Each is split at ``|``, ``;``, ``&&`` and ``||``; every ``bullworker``
  command (also ``python -m bullworker``) is parsed by the CLI's own parser, so its commands,
  options and values must be accepted; any other program must be one of ``PROGRAMS``, and a
  ``scripts/...`` command must exist.
- ``console``: a transcript. Lines starting with ``$ `` are commands, checked as in ``sh``; the
  other lines are their output, not checked.
- ``text``: output, logs or a diagram: not checked. (A fence without a language is refused,
  except for the files of ``UNTAGGED_FENCES``, whose untagged blocks are read as ``text``.)
- ``js``: an ES module, checked with ``node --check``.
- ``ts``: a TypeScript module, compiled by tests/node's ``tsc`` in strict mode beside
  ``contracts/jobs.ts``: what ``bullworker contracts export`` writes for the page's ``tasks.py``
  (a block ``# tasks.py``), or examples/contracts/generated/jobs.ts on a page without one.
- ``ini``: parsed with configparser (a systemd unit); ``bullworker`` commands of ``Exec*`` keys
  are parsed as in ``sh``.
- ``dockerfile``: every instruction must be a Dockerfile instruction; the JSON or shell form
  commands of ``RUN``, ``CMD``, ``ENTRYPOINT`` and ``HEALTHCHECK`` are checked as in ``sh``.
- ``yaml``: parsed with PyYAML when it is installed (it is not in the pinned environment);
  always checked line by line against the small YAML subset the docs use (no tabs, even
  indentation, ``key: value``, ``- item``, comments), and every ``command:`` list is checked as
  in ``sh``.

The README's first steps (its sections from "Write a job" to "See its history") also run end
to end in `test_readme_tour`: ``tasks.py`` is written, ``bullworker start`` runs in the
background, the job is queued from Python, from the CLI and from Node (the Node snippet with the
test's Redis and prefix put in for its address and prefix), and the ``text`` blocks after
``bullworker jobs`` commands must equal their output, timestamps and durations aside.

Besides the blocks: the prose's inline ``bullworker ...`` commands must name commands and options
that exist; relative links must point at files and headings that exist; docs/configuration.md
names every setting of `AppConfig` with its default; docs/cli.md is what scripts/cli-docs
writes from the CLI.

docs/benchmarks.md and docs/reliability.md are reports written by programs (``python -m bench``,
the fault suite). Their blocks are checked like the other pages' (they are trivially checkable:
benchmarks.md has none, reliability.md one ``sh`` command), but not their prose, which tells
what a past run measured (benchmarks.md names a `--loop` option that was considered, not made).
"""

from __future__ import annotations

import configparser
import contextlib
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import typer

from bullworker import AppConfig
from bullworker.cli import cli
from tests.contracts_support import check_ts_block
from tests.helpers import REDIS_URL, bullworker_env

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Reports written by programs: their blocks are checked, their prose is not (see above).
REPORTS = {"docs/benchmarks.md", "docs/reliability.md"}
PROSE_PAGES = [page for page in PAGES if str(page.relative_to(ROOT)) not in REPORTS]
NODE_MODULES = ROOT / "tests" / "node" / "node_modules"

#: Programs other than bullworker that the docs' commands may run (by the file's name).
PROGRAMS = {
    "curl",
    "docker",
    "grep",
    "head",
    "journalctl",
    "node",
    "pip",
    "pytest",
    "python",
    "redis-cli",
    "redis-server",
    "systemctl",
    "uvicorn",
}
#: Pages owned elsewhere whose untagged fences are read as ``text``, and how many they have.
#: Tag the fence (```text) and drop the entry.
UNTAGGED_FENCES: dict[str, int] = {}
DOCKERFILE_INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip
LANGUAGES = {"python", "sh", "console", "text", "js", "ts", "ini", "dockerfile", "yaml"}

#: Runs one python block: top-level ``await`` allowed, as in an async function.
RUN_BLOCK = """
import ast, asyncio, sys
path, name = sys.argv[1], sys.argv[2]
code = compile(open(path).read(), name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, {"__name__": "__main__", "__file__": path})
if asyncio.iscoroutine(result):
    asyncio.run(result)
"""


@dataclass(frozen=True)
class Block:
    page: str  # path relative to the repository
    line: int  # line of the opening fence
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def named_file(self) -> str | None:
        """The file a block says it is, on its first line (``# tasks.py``, ``// x.mjs``)."""
        first = self.text.split("\n", 1)[0]
        found = re.fullmatch(r"(?:#|//) ([\w./-]+\.(?:py|mjs))", first)
        return found.group(1) if found else None


FENCE = re.compile(r"^```(\S*)\s*$")


def read_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a page, in order."""
    page = str(path.relative_to(ROOT))
    blocks: list[Block] = []
    opened: tuple[int, str] | None = None
    lines: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if opened is None:
            found = FENCE.match(line)
            if found:
                opened, lines = (number, found.group(1)), []
        elif line.strip() == "```":
            blocks.append(Block(page, opened[0], opened[1], "\n".join(lines) + "\n"))
            opened = None
        else:
            lines.append(line)
    assert opened is None, f"{page}:{opened[0] if opened else 0}: a fence is never closed"
    return blocks


ALL_BLOCKS = [block for page in PAGES for block in read_blocks(page)]


def _marks(block: Block) -> list[pytest.MarkDecorator]:
    return [pytest.mark.node] if block.language in ("js", "ts") else []


# --- the CLI ------------------------------------------------------------------------------


def _rest(ctx: Any) -> list[str]:
    """What a group's context left for its subcommand (click 8.1 and 8.2 name it differently)."""
    protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", None)
    return [*(protected or []), *ctx.args]


def parse_bullworker(args: list[str], where: str) -> None:
    """Parse ``bullworker <args>`` as the CLI would, without running the command."""
    root = typer.main.get_command(cli)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # --help prints
            ctx = root.make_context("bullworker", list(args))
            command: Any = root
            while hasattr(command, "resolve_command") and _rest(ctx):
                name, command, rest = command.resolve_command(ctx, _rest(ctx))
                ctx = command.make_context(name, rest, parent=ctx)
    except typer.Exit as exc:
        assert exc.exit_code == 0, f"{where}: `bullworker {shlex.join(args)}` exits {exc.exit_code}"
    except Exception as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        pytest.fail(f"{where}: `bullworker {shlex.join(args)}` is refused by the CLI: {message}")


def check_names(args: list[str], where: str) -> None:
    """Inline ``bullworker ...`` in prose: its commands and ``--options`` must exist."""
    command: Any = typer.main.get_command(cli)
    ctx = command.context_class(command, info_name="bullworker")
    path = "bullworker"
    for token in args:
        if re.fullmatch(r"\.\.\.|<[^>]*>|[A-Z]+", token):
            continue  # a placeholder: ..., <command>, ID, N
        if token.startswith("--"):
            params = command.get_params(ctx)
            names = {name for param in params for name in [*param.opts, *param.secondary_opts]}
            assert token.split("=")[0] in names, f"{where}: `{path}` has no option {token}"
        elif hasattr(command, "get_command") and command.get_command(ctx, token) is not None:
            command = command.get_command(ctx, token)
            ctx = command.context_class(command, info_name=token, parent=ctx)
            path += f" {token}"
        elif path == "bullworker" and not token.startswith("-"):
            pytest.fail(f"{where}: `bullworker` has no command {token!r}")


def check_command(argv: list[str], where: str) -> None:
    """One shell command (no pipes): a bullworker command that parses, or a known program."""
    while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):
        argv = argv[1:]  # VAR=value before the command
    if argv[:1] == ["sudo"]:
        argv = argv[1:]
    assert argv, f"{where}: an empty command"
    program = argv[0]
    if program.startswith("scripts/"):
        script = ROOT / program
        assert script.is_file() and os.access(script, os.X_OK), f"{where}: no {program}"
        return
    name = Path(program).name
    if name == "bullworker":
        parse_bullworker(argv[1:], where)
    elif name in ("python", "python3") and argv[1:3] == ["-m", "bullworker"]:
        parse_bullworker(argv[3:], where)
    else:
        assert name.removesuffix("3") in PROGRAMS, (  # python3, pip3: as python, pip
            f"{where}: `{program}` is not a program the docs may run (tests/test_docs.py PROGRAMS)"
        )


def check_shell(line: str, where: str) -> None:
    """A command line, split at ``|``, ``;``, ``&&``, ``||``; each part checked."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    part: list[str] = []
    for token in [*lexer, ";"]:
        if token in ("|", ";", "&&", "||"):
            if part:
                check_command(part, where)
            part = []
        else:
            part.append(token)


def shell_lines(text: str) -> list[str]:
    """The commands of an ``sh`` block: continuations joined, blank and comment lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [
        line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


# --- the blocks ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A working directory per page, holding the files its blocks name (``# tasks.py``)."""
    dirs: dict[str, Path] = {}
    for page in PAGES:
        name = str(page.relative_to(ROOT))
        directory = tmp_path_factory.mktemp(page.stem)
        for block in read_blocks(page):
            target = block.named_file
            if target and not target.startswith("examples/"):
                (directory / target).parent.mkdir(parents=True, exist_ok=True)
                (directory / target).write_text(block.text)
        dirs[name] = directory
    return dirs


@contextlib.contextmanager
def own_prefix() -> Iterator[str]:
    """A BULL_PREFIX of its own on the test Redis; its keys are deleted afterwards."""
    prefix = f"bwdocs-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
        finally:
            client.close()


def run_python(block: Block, workdir: Path) -> None:
    target = block.named_file
    with own_prefix() as prefix:
        env = bullworker_env(
            APP_ENV="test",
            BULL_PREFIX=prefix,
            SQLITE_PATH=str(workdir / f"{prefix}.sqlite3"),
            PYTHONPATH=str(ROOT),
        )
        if target and target.startswith("examples/"):
            code = block.text.split("\n", 1)[1]
            assert code in (ROOT / target).read_text(), (
                f"{block.where}: the block is not a part of {target} as it is in the file"
            )
            module = target.removesuffix(".py").replace("/", ".")
            command = [sys.executable, "-c", f"import {module}"]
            cwd = ROOT
        else:
            source = workdir / f"block-{block.line}.py"
            source.write_text(block.text)
            command = [sys.executable, "-c", RUN_BLOCK, str(source), block.where]
            cwd = workdir
        out = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
        )
    assert out.returncode == 0, f"{block.where}: the block failed:\n{out.stdout}{out.stderr}"


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not on PATH: the js blocks need Node.js 20+")
    return found


def check_js(block: Block, tmp_path: Path) -> None:
    source = tmp_path / "block.mjs"
    source.write_text(block.text)
    out = subprocess.run(
        [node(), "--check", str(source)], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0, f"{block.where}: node --check failed:\n{out.stderr}"


def check_ini(block: Block) -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(block.text, source=block.where)
    assert parser.sections(), f"{block.where}: no [section]"
    for section in parser.sections():
        for key, value in parser[section].items():
            if key.startswith("Exec"):
                check_shell(value.lstrip("-@+!"), f"{block.where} [{section}] {key}")


def check_dockerfile(block: Block) -> None:
    for line in shell_lines(block.text):
        instruction, _, rest = line.strip().partition(" ")
        assert instruction in DOCKERFILE_INSTRUCTIONS, (
            f"{block.where}: {instruction!r} is not a Dockerfile instruction"
        )
        if instruction == "HEALTHCHECK":
            rest = re.sub(r"^(--\S+\s+)*", "", rest.strip())
            if rest == "NONE":
                continue
            assert rest.startswith("CMD "), f"{block.where}: HEALTHCHECK without CMD"
            rest = rest.removeprefix("CMD ")
        if instruction in ("RUN", "CMD", "ENTRYPOINT", "HEALTHCHECK"):
            if rest.strip().startswith("["):
                check_command(json.loads(rest), block.where)
            else:
                check_shell(rest, block.where)


YAML_LINE = re.compile(r"(?P<indent> *)(- +)?([\w.-]+:( .*)?|- .*|[^\s#].*)")


def check_yaml(block: Block) -> None:
    try:
        import yaml
    except ImportError:
        pass
    else:
        yaml.safe_load(block.text)
    for number, line in enumerate(block.text.splitlines(), block.line + 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assert "\t" not in line, f"{block.page}:{number}: a tab in YAML"
        found = YAML_LINE.fullmatch(line)
        assert found and len(found.group("indent")) % 2 == 0, f"{block.page}:{number}: {line!r}"
        key, _, value = line.strip().partition(":")
        if key == "command" and value.strip().startswith("["):
            check_command(json.loads(value), f"{block.page}:{number}")


def check_console(block: Block) -> None:
    commands = [line[2:] for line in block.text.splitlines() if line.startswith("$ ")]
    assert commands, f"{block.where}: a console block without a `$ ` command"
    for command in commands:
        check_shell(command, block.where)


def check_sh(block: Block) -> None:
    lines = shell_lines(block.text)
    assert lines, f"{block.where}: an sh block without a command"
    for line in lines:
        assert not line.startswith("$ "), (
            f"{block.where}: `$ ` lines are for console blocks (a transcript); sh has commands only"
        )
        check_shell(line, block.where)


@pytest.mark.parametrize(
    "block", [pytest.param(b, id=f"{b.where}-{b.language or 'untagged'}", marks=_marks(b)) for b in ALL_BLOCKS]
)  # fmt: skip
def test_block(block: Block, workdirs: dict[str, Path], tmp_path: Path) -> None:
    language = block.language
    if not language and block.page in UNTAGGED_FENCES:
        language = "text"
    assert language in LANGUAGES, (
        f"{block.where}: a block in {language or 'no language'!r}: give it one of "
        f"{', '.join(sorted(LANGUAGES))} (tests/test_docs.py says what each one means)"
    )
    if language == "python":
        run_python(block, workdirs[block.page])
    elif language == "sh":
        check_sh(block)
    elif language == "console":
        check_console(block)
    elif language == "js":
        check_js(block, tmp_path)
    elif language == "ts":
        check_ts_block(block.text, block.where, workdirs[block.page], tmp_path)
    elif language == "ini":
        check_ini(block)
    elif language == "dockerfile":
        check_dockerfile(block)
    elif language == "yaml":
        check_yaml(block)


def test_untagged_fences_are_the_known_ones() -> None:
    found = {}
    for block in ALL_BLOCKS:
        if not block.language:
            found[block.page] = found.get(block.page, 0) + 1
    assert found == UNTAGGED_FENCES, (
        "update UNTAGGED_FENCES (or tag the fences) in tests/test_docs.py"
    )


# --- the prose ----------------------------------------------------------------------------


def prose(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a page outside its fences."""
    fenced = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(line) or (fenced and line.strip() == "```"):
            fenced = not fenced
        elif not fenced:
            yield number, line


@pytest.mark.parametrize("page", PROSE_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_inline_commands_exist(page: Path) -> None:
    """Inline `bullworker ...` names commands and options of the CLI."""
    for number, line in prose(page):
        for span in re.findall(r"`(bullworker [^`]+)`", line):
            try:
                tokens = shlex.split(span)
            except ValueError:
                tokens = span.split()
            check_names(tokens[1:], f"{page.relative_to(ROOT)}:{number}")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for _, line in prose(path):
        if line.startswith("#"):
            base = slug(line.lstrip("#"))
            name, n = base, 0
            while name in found:
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


@pytest.mark.parametrize("page", PROSE_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    for number, line in prose(page):
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            file, _, anchor = target.partition("#")
            resolved = (page.parent / file).resolve() if file else page
            where = f"{page.relative_to(ROOT)}:{number}"
            assert resolved.exists(), f"{where}: {target} does not exist"
            if anchor and resolved.suffix == ".md":
                assert anchor in anchors(resolved), f"{where}: {target}: no such heading"


# --- the generated and checked pages ------------------------------------------------------


def test_cli_reference_is_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location("cli_docs", ROOT / "scripts" / "cli_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.render()
    assert (ROOT / "docs" / "cli.md").read_text() == expected, (
        "docs/cli.md is out of date: run scripts/cli-docs"
    )


def _shown(value: Any) -> str:
    """A default as docs/configuration.md writes it."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_configuration_page_names_every_setting_with_its_default() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    table = text.split("## Settings", 1)[1]
    documented: dict[str, str] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z_*]+)`", cells[0])
        defaults = [d.strip().strip("`") for d in cells[1].split(",")]
        assert len(names) == len(defaults), f"configuration.md: {line}: one default per name"
        documented.update(zip(names, defaults, strict=True))
    settings = {name.upper(): getattr(AppConfig, name) for name in AppConfig.settings()}
    grouped = {name for name in settings if name.startswith("BULL_REDIS_")}
    assert documented.pop("BULL_REDIS_*") == "unset"
    assert all(settings[name] is None for name in grouped)
    missing = set(settings) - grouped - set(documented)
    extra = set(documented) - set(settings)
    assert not missing, f"docs/configuration.md lacks {sorted(missing)}"
    assert not extra, f"docs/configuration.md names settings that do not exist: {sorted(extra)}"
    wrong = {n: (d, _shown(settings[n])) for n, d in documented.items() if d != _shown(settings[n])}
    assert not wrong, f"docs/configuration.md defaults (documented, actual): {wrong}"


# --- the README's first steps, end to end -------------------------------------------------


TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
DURATION = re.compile(r"\b\d+\.\d{3}s\b")
LOG_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


def masked(text: str) -> list[str]:
    """Output lines with timestamps and durations masked and runs of spaces made one."""
    text = DURATION.sub("<duration>", TIMESTAMP.sub("<time>", text))
    return [" ".join(line.split()) for line in text.strip().splitlines()]


def log_lines(text: str) -> list[str]:
    """Log lines without their time and trace id (present when opentelemetry is installed)."""
    return [re.sub(r"\[trace=[^]]*\] ", "", LOG_TIME.sub("", line)) for line in text.splitlines()]


def tour_blocks() -> list[Block]:
    readme = (ROOT / "README.md").read_text().splitlines()
    start = readme.index("## Write a job") + 1
    end = readme.index("## Testing your jobs") + 1
    return [b for b in read_blocks(ROOT / "README.md") if start < b.line < end]


def wait_for(check: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"the README tour: {what} within {timeout:g} s")
        time.sleep(0.1)


class Tour:
    """The README's first steps, run in ``directory`` as a newcomer runs them."""

    def __init__(self, directory: Path, prefix: str, bin_dir: Path | None = None) -> None:
        """``bin_dir``: the virtual environment's scripts (default: this interpreter's)."""
        self.directory = directory
        self.prefix = prefix
        self.env = bullworker_env(BULL_PREFIX=prefix)
        scripts = bin_dir or Path(sys.executable).parent
        self.programs = {
            "bullworker": str(scripts / "bullworker"),
            "python": str(scripts / "python") if bin_dir else sys.executable,
            "node": node(),
        }
        self.log = directory / "worker.log"
        self.worker: subprocess.Popen[bytes] | None = None
        self.queued = 0
        #: The last command and its output, for the ``text`` block after it.
        self.last: tuple[str, str] | None = None

    def write(self, block: Block) -> None:
        """A named file; the Node one with the test's Redis and prefix put in."""
        name = block.named_file
        assert name is not None
        text = block.text
        if name.endswith(".mjs"):
            ours = {
                'connection: { host: "127.0.0.1", port: 6379 }': (
                    f"connection: {{ url: {json.dumps(REDIS_URL)} }}"
                ),
                'prefix: "bull"': f"prefix: {json.dumps(self.prefix)}",
            }
            for literal, replacement in ours.items():
                assert literal in text, f"{block.where}: the tour expects {literal!r}"
                text = text.replace(literal, replacement)
        (self.directory / name).write_text(text)

    def run(self, line: str, where: str) -> None:
        """One command of an ``sh`` block: the worker in the background, the rest to the end."""
        argv = shlex.split(line)
        assert argv[0] in self.programs, f"{where}: the tour cannot run `{line}`"
        command = [self.programs[argv[0]], *argv[1:]]
        if argv[:2] == ["bullworker", "start"]:
            with self.log.open("wb") as log:
                self.worker = subprocess.Popen(
                    command, cwd=self.directory, env=self.env, stdout=log, stderr=log
                )
            wait_for(lambda: "runner started" in self.log.read_text(), "no `runner started`")
            self.last = (line, "")
            return
        if argv[:2] == ["bullworker", "jobs"]:
            wait_for(lambda: recorded(self.directory) >= self.queued, "jobs not recorded")
        out = subprocess.run(
            command, cwd=self.directory, env=self.env,
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert out.returncode == 0, f"{where}: `{line}` failed:\n{out.stdout}{out.stderr}"
        if argv[0] in ("python", "node") or argv[:2] == ["bullworker", "queue"]:
            self.queued += 1
        self.last = (line, out.stdout)

    def compare(self, block: Block) -> None:
        """A ``text`` block: the worker's log lines, or the output of the command before it."""
        assert self.last is not None, f"{block.where}: output of no command"
        command, output = self.last
        self.last = None
        if command.startswith("bullworker start"):
            for line in log_lines(block.text):
                wait_for(
                    lambda line=line: line in self.worker_log(), f"the worker did not log {line!r}"
                )
        else:
            assert masked(output) == masked(block.text), (
                f"{block.where}: `{command}` printed\n{output}"
            )

    def worker_log(self) -> list[str]:
        return log_lines(self.log.read_text())

    def stop(self) -> int:
        """SIGTERM, as the README says to stop the worker; its exit status (0 if none)."""
        if self.worker is None:
            return 0
        self.worker.send_signal(signal.SIGTERM)
        try:
            return self.worker.wait(30)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            return self.worker.wait()


@pytest.mark.node
@pytest.mark.timeout(90)
def test_readme_tour(tmp_path: Path) -> None:
    """The README's first steps, as a newcomer runs them, against the test Redis."""
    run_tour(tmp_path)


def run_tour(tmp_path: Path, bin_dir: Path | None = None) -> None:
    """The README tour in ``tmp_path``, with the programs of ``bin_dir`` (see :class:`Tour`)."""
    if not (NODE_MODULES / "bullmq" / "package.json").is_file():
        pytest.fail(f"{NODE_MODULES} is missing: run `npm ci --prefix tests/node`")
    (tmp_path / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    blocks = tour_blocks()
    with own_prefix() as prefix:
        tour = Tour(tmp_path, prefix, bin_dir)
        for block in blocks:
            if block.named_file:
                tour.write(block)
        try:
            for block in blocks:
                if block.language == "sh":
                    for line in shell_lines(block.text):
                        tour.run(line, block.where)
                elif block.language == "text":
                    tour.compare(block)
            assert tour.queued == 3, "the tour queues a job from Python, the CLI and Node"
            assert "INFO tasks: Hello, Ada!" in tour.worker_log(), "README: the worker's log line"
        finally:
            code = tour.stop()
    assert code == 0, f"the worker exited with {code}:\n{tour.log.read_text()}"


def recorded(directory: Path) -> int:
    """Rows in the tour's ``_jobs`` (the SQLite file in the worker's directory)."""
    import sqlite3

    path = directory / "bullworker.sqlite3"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        try:
            return int(db.execute('SELECT count(*) FROM "_jobs"').fetchone()[0])
        except sqlite3.OperationalError:
            return 0
