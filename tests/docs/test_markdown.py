"""The doc-test conventions: which blocks run, what they must exit and print (no engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.markdown import (
    DOCUMENTS,
    DocTestSyntaxError,
    examples,
    missing_output,
    split_commands,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "doc.md"
    path.write_text(text)
    return path


def test_runnable_blocks_skips_and_outputs_are_read_in_order(tmp_path: Path) -> None:
    doc = write(
        tmp_path,
        "# t\n\n```sh\nlotwise sites\n```\n\n<!-- doc-test: output -->\n```\n5 sites\n```\n\n"
        "<!-- doc-test: skip (starts a second engine) -->\n\n```sh\nmake up\n```\n\n"
        '```python\nprint("hi")\n```\n\n```json\n{"a": 1}\n```\n',
    )
    found = examples(doc)
    assert [(e.line, e.lang) for e in found] == [(3, "sh"), (14, "sh"), (18, "python")]
    assert found[0].expected_output == "5 sites\n"
    assert found[0].skip_reason == ""
    assert found[1].skip_reason == "starts a second engine"
    assert found[2].code == 'print("hi")\n'
    assert found[0].name == "doc.md:3"


def test_a_directive_binds_only_to_the_next_block(tmp_path: Path) -> None:
    doc = write(tmp_path, "<!-- doc-test: skip (x) -->\nsome prose\n```sh\ntrue\n```\n")
    assert examples(doc)[0].skip_reason == ""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("```bash\nls\n```\n", "write ```sh or ```python", id="misspelled-shell"),
        pytest.param("```py\nx = 1\n```\n", "write ```sh or ```python", id="misspelled-python"),
        pytest.param("<!-- doc-test: skip -->\n```sh\nls\n```\n", "unknown directive", id="skip-without-reason"),
        pytest.param("<!-- doc-test: later -->\n```sh\nls\n```\n", "unknown directive", id="unknown-directive"),
        pytest.param("<!-- doc-test: output -->\n```\nx\n```\n", "must follow a runnable", id="orphan-output"),
        pytest.param("```sh\nls\n", "unclosed code fence", id="unclosed"),
        pytest.param("<!-- doc-test: skip (x) -->\n```json\n{}\n```\n", "directive on a", id="skip-on-data"),
    ],
)
def test_a_broken_convention_names_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    doc = write(tmp_path, text)
    with pytest.raises(DocTestSyntaxError) as caught:
        examples(doc)
    assert problem in caught.value.problem
    assert str(doc) in str(caught.value)


def test_commands_join_continuations_drop_comments_and_read_exit_codes() -> None:
    code = (
        "# a comment line\n\nlotwise sites   # trailing comment\n"
        "grpcurl -plaintext -d '{}' \\\n  host:1 svc/Method\nlotwise hold NOPE   # exits 1\n"
    )
    commands = split_commands(code, first_line=10)
    assert [(c.line, c.exit_code) for c in commands] == [(12, 0), (13, 0), (15, 1)]
    assert commands[1].text == "grpcurl -plaintext -d '{}' host:1 svc/Method"


def test_a_dangling_continuation_is_an_error() -> None:
    with pytest.raises(ValueError, match="continuation"):
        split_commands("ls \\\n")


def test_output_lines_must_appear_in_order_whatever_the_padding() -> None:
    printed = "┃ site   ┃ org ┃\n│ FW-BOS │ medline/east/boston │\n│ CAB-MGH-ICU │ x │\n"
    assert missing_output("│ FW-BOS │ medline/east/boston │\n\n│ CAB-MGH-ICU │", printed) is None
    assert missing_output("CAB-MGH-ICU\nFW-BOS", printed) == "FW-BOS"  # out of order
    assert missing_output("DC-EAST", printed) == "DC-EAST"


def test_the_documents_follow_the_conventions() -> None:
    found = {doc: examples(doc) for doc in DOCUMENTS}  # raises on a broken convention
    readme = [ex for ex in found[DOCUMENTS[0]] if not ex.skip_reason]
    assert {ex.lang for ex in readme} == {"sh", "python"}
    assert any(ex.expected_output for ex in readme), "the README shows some output the tests check"
