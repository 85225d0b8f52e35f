"""A lint over the tests themselves: no assertion that cannot fail. It flags `assert <constant>` and chained
comparisons that only check a value against the trivial bounds of a cosine or a fraction (-1..1, 0..1), which
every such value satisfies whether the feature works or not."""

import ast
import io
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
TRIVIAL_BOUNDS = {(0, 1), (-1, 1)}


def _const(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -node.operand.value
    return None


def _always_true(test: ast.expr) -> bool:
    if isinstance(test, ast.Constant):
        return bool(test.value)
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return all(_always_true(v) for v in test.values)
    if isinstance(test, ast.Compare) and len(test.ops) == 2 and all(isinstance(o, ast.LtE) for o in test.ops):
        return (_const(test.left), _const(test.comparators[1])) in TRIVIAL_BOUNDS
    return False


def hollow_asserts(source: str, name: str = "<test>") -> list[int]:
    """Line numbers of assertions that hold whatever the code under test does."""
    tree = ast.parse(source, name)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and _always_true(node.test):
            out.append(node.lineno)
        # `all(-1 <= x <= 1 for x in xs)` inside an assert
        if isinstance(node, ast.Assert):
            for sub in ast.walk(node.test):
                if isinstance(sub, ast.GeneratorExp) and _always_true(sub.elt):
                    out.append(node.lineno)
    return sorted(set(out))


def test_the_lint_catches_hollow_asserts():
    src = ("assert True\nassert 0 <= acc <= 1\nassert all(-1 <= c <= 1 for c in cs)\n"
           "assert 0.2 <= acc <= 1\nassert x == 3\nassert ok and 0 <= f <= 1\n")
    assert hollow_asserts(src) == [1, 2, 3]


def test_no_test_has_an_assertion_that_cannot_fail():
    bad = {p.name: hollow_asserts(p.read_text(), str(p)) for p in sorted(TESTS.glob("*.py"))
           if p.name != Path(__file__).name}
    assert {k: v for k, v in bad.items() if v} == {}


def test_progress_bars_are_off_when_stderr_is_not_a_terminal(monkeypatch):
    """progress.bar draws on a terminal only: logs and pipes get no bars, --quiet/--json never do."""
    from mlcbuild_common.progress import bar

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert bar(total=3, desc="x").disable is True
    monkeypatch.setattr(sys, "stderr", Tty())
    with bar(total=3, desc="x") as b:
        assert not b.disable
        b.update(3)
    assert "3/3" in sys.stderr.getvalue()
    assert bar(total=3, enabled=False).disable is True
