"""The README's Python examples run as written (all but the lab's, which trains for minutes), and what
their comments claim holds: a line commented ``# True`` must evaluate to True, a line commented
``# torch.Size([...])`` must have that shape, ``# 3`` (a bare number) that value.

The README names no file outside the repository.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEXT = README.read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)


def _comment(line: str) -> tuple[str, str]:
    """(code, comment) of one source line, split where tokenize finds the comment."""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line).readline):
            if tok.type == tokenize.COMMENT:
                return line[: tok.start[1]].rstrip(), tok.string[1:].strip()
    except (tokenize.TokenError, IndentationError):
        pass
    return line, ""


def _is_expression(code: str) -> bool:
    try:
        ast.parse(code.strip(), mode="eval")
    except SyntaxError:
        return False
    return bool(code.strip()) and not code.startswith((" ", "\t"))


def checked(code: str) -> tuple[str, int]:
    """The block with each claim-commented expression line turned into an assertion; the number of claims."""
    out, claims = [], 0
    for n, line in enumerate(code.splitlines(), 1):
        expr, comment = _comment(line)
        if _is_expression(expr):
            where = f"README line {n} of the block: {expr.strip()}"
            if re.match(r"True\b", comment):
                line, claims = f"assert ({expr.strip()}) is True, {where!r}", claims + 1
            elif m := re.match(r"torch\.Size\((\[[\d, ]*\])\)", comment):
                line = f"assert tuple(_shape({expr.strip()})) == tuple({m.group(1)}), {where!r}"
                claims += 1
            elif m := re.match(r"(-?\d+(?:\.\d+)?)(?::|$)", comment):
                line, claims = f"assert ({expr.strip()}) == {m.group(1)}, {where!r}", claims + 1
        out.append(line)
    return "\n".join(out), claims


def _shape(value):
    """A shape claim's subject: a ``torch.Size`` itself, or the shape of a tensor."""
    return value if isinstance(value, tuple) else value.shape


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 4


def test_readme_claims_are_found():
    """The README does make checkable claims (else the assertions below test nothing)."""
    total = sum(checked(b)[1] for b in BLOCKS)
    assert total >= 8, total
    assert sum(bool(re.search(r"#\s*True\b", b)) for b in BLOCKS) >= 3


def test_readme_names_no_file_outside_the_repository():
    assert "../" not in TEXT.replace("](../", "")  # no ../path references
    for path in re.findall(r"`((?:benchmarks|tests|src|docs)/[\w/.-]+\.(?:py|md|sh))`", TEXT):
        assert (ROOT / path).exists(), path


def test_checked_turns_claims_into_assertions():
    code, n = checked("x = 1\nx == 2  # True\nlen([1, 2])  # 2\n")
    assert n == 2
    with pytest.raises(AssertionError, match="x == 2"):
        exec(compile(code, "claims", "exec"), {})


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs_and_its_claims_hold(index, tmp_path, monkeypatch):
    code = BLOCKS[index]
    if "run_study(" in code:
        pytest.skip("the lab example trains for minutes; tests/lab covers the same calls")
    monkeypatch.chdir(tmp_path)
    code, _ = checked(code)
    exec(compile(code, f"README.md[python block {index}]", "exec"), {"__name__": "readme", "_shape": _shape})
