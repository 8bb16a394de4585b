"""The examples of a markdown document: its ```sh and ```python blocks, and what they promise.

Conventions, as HTML comments (invisible when the markdown is rendered), on the line
before a fence (blank lines between are allowed):

    <!-- doc-test: skip (why) -->    the next block cannot run in the doc tests; the reason is required
    <!-- doc-test: output -->        the next block is output the previous runnable block prints

and, inside a ```sh block, a comment `# exits N` on a command that is meant to exit N
(every other command must exit 0). A ```python block must exit 0.

Every fenced block in a documented language is accounted for: runnable (sh, python), an
output block, or data (json, toml, text, no language). A shell or Python block in any other
spelling (bash, console, py, ...) is an error, so no example escapes the tests by its tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The documents whose examples are tests (the ingestion README's JSON payloads are also
# checked against the decoder in tests/unit/test_ingest_events.py).
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "adapters/nats/ingest/README.md")
RUNNABLE = frozenset({"sh", "python"})
# Spellings of shell and Python that would slip past the runner: refused, use sh / python.
MISSPELLED = frozenset({"bash", "shell", "console", "zsh", "shell-session", "py", "python3", "pycon"})

_DIRECTIVE = re.compile(r"^<!--\s*doc-test:\s*(?P<body>.*?)\s*-->$")
_SKIP = re.compile(r"^skip\s*\((?P<reason>.+)\)$")
_FENCE = re.compile(r"^(?P<fence>```+)\s*(?P<info>[^`]*)$")
_EXITS = re.compile(r"#\s*exits\s+(?P<code>\d+)\b")


class DocTestSyntaxError(Exception):
    """A document breaks the conventions above: names the file and line."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Command:
    """One shell command of an sh block (continuation lines joined), and its exit code."""

    line: int
    text: str
    exit_code: int


@dataclass(frozen=True, slots=True)
class Example:
    """A runnable block, with the output a following output block shows (if any)."""

    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip_reason: str = ""
    expected_output: str = ""

    @property
    def name(self) -> str:
        return f"{self.path.name}:{self.line}"

    def commands(self) -> list[Command]:
        """The sh block's commands (a ```python block is one program: no commands)."""
        return split_commands(self.code, self.line + 1) if self.lang == "sh" else []


@dataclass(frozen=True, slots=True)
class _Fence:
    line: int
    lang: str
    code: str
    directive: str


def examples(path: Path) -> list[Example]:
    """The runnable blocks of `path`, in document order, with their skip reasons and outputs."""
    found: list[Example] = []
    for fence in _fences(path):
        if fence.directive == "output":
            if not found or found[-1].expected_output:
                raise DocTestSyntaxError(path, fence.line, "an output block must follow a runnable block")
            last = found[-1]
            found[-1] = Example(last.path, last.line, last.lang, last.code, last.skip_reason, fence.code)
            continue
        if fence.lang in MISSPELLED:
            raise DocTestSyntaxError(path, fence.line, f"```{fence.lang}: write ```sh or ```python")
        skip = _skip_reason(path, fence)
        if fence.lang in RUNNABLE:
            found.append(Example(path, fence.line, fence.lang, fence.code, skip))
        elif fence.directive:
            raise DocTestSyntaxError(path, fence.line, f"doc-test directive on a ```{fence.lang} block")
    return found


def _skip_reason(path: Path, fence: _Fence) -> str:
    if not fence.directive:
        return ""
    match = _SKIP.match(fence.directive)
    if match is None:
        raise DocTestSyntaxError(path, fence.line, f"unknown directive {fence.directive!r} (skip (why) or output)")
    return match.group("reason").strip()


def _fences(path: Path) -> list[_Fence]:
    lines = path.read_text(encoding="utf-8").splitlines()
    fences: list[_Fence] = []
    directive = ""
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if match := _DIRECTIVE.match(stripped):
            directive = match.group("body")
        elif match := _FENCE.match(stripped):
            end = _closing(lines, i, match.group("fence"), path)
            lang = (match.group("info").split() or [""])[0].lower()
            fences.append(_Fence(i + 1, lang, "\n".join(lines[i + 1 : end]) + "\n", directive))
            directive = ""
            i = end
        elif stripped:
            directive = ""  # a directive binds to the very next block only
        i += 1
    return fences


def _closing(lines: list[str], start: int, fence: str, path: Path) -> int:
    for j in range(start + 1, len(lines)):
        if lines[j].strip() == fence:
            return j
    raise DocTestSyntaxError(path, start + 1, "unclosed code fence")


def split_commands(code: str, first_line: int = 1) -> list[Command]:
    """Shell commands of a block: `\\` continuations joined, comment-only and blank lines dropped."""
    commands: list[Command] = []
    pending: list[str] = []
    start = first_line
    for offset, raw in enumerate(code.splitlines()):
        if not pending:
            start = first_line + offset
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
        if raw.endswith("\\"):
            pending.append(raw[:-1])
            continue
        text = " ".join(part.strip() for part in [*pending, raw])
        pending = []
        exits = _EXITS.search(text)
        commands.append(Command(start, text, int(exits.group("code")) if exits else 0))
    if pending:
        raise ValueError(f"line {start}: a continuation `\\` at the end of the block")
    return commands


def missing_output(expected: str, actual: str) -> str | None:
    """The first expected line not printed (in order, whitespace-insensitive), or None.

    Each non-blank line of `expected` must occur within a line of `actual`, after the line
    that matched the previous one: tables may pad differently, the content may not.
    """
    printed = [" ".join(line.split()) for line in actual.splitlines()]
    at = 0
    for want in (" ".join(line.split()) for line in expected.splitlines()):
        if not want:
            continue
        while at < len(printed) and want not in printed[at]:
            at += 1
        if at == len(printed):
            return want
        at += 1
    return None
