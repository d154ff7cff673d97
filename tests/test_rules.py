"""Rules that keep the code honest, checked on its source: one wall clock, SQL composed and never edited as text."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The application's own code. The sandbox stands in for QuickBooks and keeps its own clock, like the real service.
PACKAGE = ("pipelines", "schemas", "qbo", "ui", "app_pages", "server.py", "app.py")
NOT_OURS = ("qbo/sandbox/",)
CLOCK_MODULE = "pipelines/clock.py"
SQL_WORDS = re.compile(r"\b(SELECT|FROM|WHERE|JOIN|INSERT|UPDATE|DELETE|UNION|VALUES|GROUP BY|ORDER BY)\b")
SQL_NAME = re.compile(r"sql|query|statement", re.IGNORECASE)


def package_files() -> Iterator[Path]:
    for name in PACKAGE:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(path.rglob("*.py")) if path.is_dir() else []
        for file in files:
            rel = file.relative_to(ROOT).as_posix()
            if not rel.startswith(NOT_OURS):
                yield file


def _source(node: ast.AST, text: str) -> str:
    return ast.get_source_segment(text, node) or ""


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def sql_surgery(text: str) -> list[tuple[int, str]]:
    """Calls that rewrite SQL text: `<sql>.replace(...)`, `re.sub(..., <sql>)`, or either with SQL in its pattern."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        func = node.func
        if func.attr == "replace" and not isinstance(func.value, ast.Name | ast.Attribute | ast.Call | ast.Constant):
            continue
        if func.attr == "replace":
            target, pattern_args = func.value, node.args
        elif func.attr in ("sub", "subn") and _source(func.value, text) == "re":
            target, pattern_args = (node.args[2] if len(node.args) > 2 else None), node.args[:1]
        else:
            continue
        # `.replace` on a datetime or a dataclass takes keywords only; text replacement takes two positionals.
        if func.attr == "replace" and len(node.args) < 2:
            continue
        target_text = _source(target, text) if target is not None else ""
        by_name = bool(SQL_NAME.search(target_text))
        by_text = any(SQL_WORDS.search(s) for arg in pattern_args for s in _strings(arg))
        by_target = target is not None and any(SQL_WORDS.search(s) for s in _strings(target))
        if by_name or by_text or by_target:
            found.append((node.lineno, _source(node, text)[:100]))
    return found


WALL_CLOCK = re.compile(r"\b(datetime\.(now|utcnow|today)\(|date\.today\(|time\.time\(\)|time\.time_ns\(\))")
SQL_CLOCK = re.compile(r"\b(now\(\)|current_timestamp|current_date|today\(\)|get_current_timestamp\(\))", re.IGNORECASE)


def wall_clock_reads(text: str) -> list[tuple[int, str]]:
    found = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if WALL_CLOCK.search(line)]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_WORDS.search(node.value):
            if SQL_CLOCK.search(node.value):
                found.append((node.lineno, node.value.strip()[:100]))
    return found


def test_the_rules_see_what_they_forbid() -> None:
    """Each detector finds the shape it is for (the retry crash came from the first one) and leaves the rest."""
    assert sql_surgery('usage = mapping_usage_sql(k).replace("SELECT realm_id,", "SELECT realm_id, k,")\n')
    assert sql_surgery('text = re.sub(r"FROM (\\w+)", "FROM x", body)\n')
    assert sql_surgery("query = query.replace(old, new)\n")
    assert not sql_surgery("when = now.replace(hour=9)\nname = label.replace('_', ' ')\n")
    assert wall_clock_reads("stamp = datetime.now(UTC)\n") and wall_clock_reads("day = date.today()\n")
    assert wall_clock_reads('sql = "UPDATE runs SET finished_at = now() WHERE id = ?"\n')
    assert not wall_clock_reads("now = clock()\nlater = now + gap\n")


def test_no_code_edits_the_text_of_sql() -> None:
    """Shared SQL is composed from named pieces with parameters; a rewrite of another query's text breaks silently."""
    offenders = {f.relative_to(ROOT).as_posix(): hits for f in package_files() if (hits := sql_surgery(f.read_text()))}
    assert not offenders, offenders


def test_the_wall_clock_is_read_in_one_module() -> None:
    """Everything takes `now` (or a clock) from its caller; only pipelines/clock.py asks the system."""
    offenders = {
        rel: hits
        for f in package_files()
        if (rel := f.relative_to(ROOT).as_posix()) != CLOCK_MODULE and (hits := wall_clock_reads(f.read_text()))
    }
    assert not offenders, offenders


@pytest.mark.parametrize("module", [CLOCK_MODULE])
def test_the_clock_module_is_where_the_wall_clock_is_read(module: str) -> None:
    assert wall_clock_reads((ROOT / module).read_text()), "the one clock moved: update CLOCK_MODULE"
