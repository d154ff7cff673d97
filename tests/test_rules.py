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


# -- the architecture, as imports ----------------------------------------------------------------------------
def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) for every import in a file, at any depth (a function-level import is still one)."""
    found = []
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.append((node.lineno, base, [a.name for a in node.names]))
    return found


def our_graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports (a `from pkg import mod` counts as importing pkg.mod)."""
    files = {module_name(f): f for f in package_files()}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        for _line, target, names in imports_of(path):
            candidates = [f"{target}.{n}" for n in names] + [target]
            for c in candidates:
                if c in files and c != module:
                    graph[module].add(c)
                    break
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package() -> None:
    assert cycles(our_graph()) == []


def test_the_engine_and_the_contract_never_import_streamlit_or_altair() -> None:
    offenders = [
        f"{f.relative_to(ROOT)}:{line} {target}"
        for f in package_files()
        if f.relative_to(ROOT).parts[0] in ("pipelines", "schemas", "qbo")
        for line, target, _names in imports_of(f)
        if target.split(".")[0] in ("streamlit", "altair")
    ]
    assert offenders == []


def test_no_module_imports_another_modules_private_name() -> None:
    offenders = [
        f"{f.relative_to(ROOT)}:{line} from {target} import {name}"
        for f in package_files()
        for line, target, names in imports_of(f)
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert offenders == []


ENVIRONMENT = re.compile(r"\bos\.environ\b|\bos\.getenv\(|\bgetenv\(")
CONFIG_MODULE = "pipelines/config.py"


def test_the_environment_is_read_in_one_module() -> None:
    offenders = {
        rel: [n for n, line in enumerate(f.read_text().splitlines(), 1) if ENVIRONMENT.search(line)]
        for f in package_files()
        if (rel := f.relative_to(ROOT).as_posix()) != CONFIG_MODULE and ENVIRONMENT.search(f.read_text())
    }
    assert offenders == {}


# What changes the store's records, mappings, decisions, exceptions or QuickBooks: the engine's write steps.
ENGINE_WRITES = {
    "pipelines.ingest": {"ingest_snapshot"},
    "pipelines.pull": {"pull", "pull_entities"},
    "pipelines.readiness": {"run_check"},
    "pipelines.sync": {"sync_run", "requeue", "settle_open_intents"},
    "pipelines.cycle": {"run_cycle"},
    "pipelines.exceptions": {"refresh_exceptions", "escalate", "assign", "resolve", "exclude", "mark_synced"},
    "pipelines.mappings": {"set_mapping", "refresh_mappings"},
    "pipelines.duplicates": {"link_duplicate", "confirm_create_new", "adopt_marked"},
    "pipelines.connection": {"connect"},
    "pipelines.connection_health": {"check_reconnect"},
}
# The edges a person or the scheduler reaches the engine from: these may write only through the commands.
EDGES = ("pipelines/cli.py", "pipelines/serve/", "pipelines/views/", "pipelines/demo/", "ui/", "app_pages/",
         "server.py", "app.py")  # fmt: skip


def test_every_write_from_the_cli_pages_server_and_scheduler_goes_through_a_command() -> None:
    offenders = []
    for f in package_files():
        rel = f.relative_to(ROOT).as_posix()
        if not rel.startswith(EDGES):
            continue
        for line, target, names in imports_of(f):
            for name in names:
                if name in ENGINE_WRITES.get(target, set()):
                    offenders.append(f"{rel}:{line} imports {target}.{name}")
    assert offenders == [], "\n".join(offenders)


def test_the_commands_are_what_the_edges_call() -> None:
    """The other side of the rule above: the edges do reach the engine, through pipelines.commands."""
    users = {
        f.relative_to(ROOT).as_posix()
        for f in package_files()
        if any(target == "pipelines.commands" for _line, target, _names in imports_of(f))
    }
    assert {"pipelines/cli.py", "server.py", "ui/actions.py", "pipelines/serve/scheduler.py"} <= users
