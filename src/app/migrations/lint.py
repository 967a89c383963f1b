"""Migration safety: what would lock or break a live database, found before it runs.

Two sources: squawk (PyPI `squawk-cli`) over the PostgreSQL SQL each revision renders, and our
own checks over the migration files, which see what squawk cannot (an operation's intent in
Python, on every backend). A finding can be waived on its line, or the line above, with
`# lint: allow <rule>: <reason>`.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from sqlalchemy import Dialect
from sqlalchemy.dialects import mysql, postgresql, sqlite

from app.migrations.offline_sql import own_sql, render_sql
from app.migrations.progress import compile_problem
from app.migrations.state import alembic_config

SQUAWK_CONFIG = Path(__file__).with_name("squawk.toml")
_ALLOW = re.compile(r"#\s*lint:\s*allow\s+([\w/-]+)")

SAFE_ALTERNATIVES = {
    "not-null-without-default": "migration_ops.add_not_null_column(table, column, backfill=...) "
    "adds it nullable, fills it in batches and makes it NOT NULL without a long lock",
    "drop-column": "stop using the column in one release and drop it in a later one "
    "(expand/contract)",
    "drop-table": "stop using the table in one release and drop it in a later one",
    "rename": "migration_ops.rename_column(table, column, new_name) or rename_table(name, "
    "new_name) serves both names while old and new code run; finish_rename_column or "
    "finish_rename_table in a later release drops the old one",
    "type-change": "migration_ops.alter_column(table, column, type_=..., existing_type=...) "
    "fills a column of the new type kept in step by triggers and swaps it in under a short lock",
    "index-not-concurrent": "migration_ops.create_index(name, table, columns) builds it without "
    "blocking writes on every backend",
    "add-foreign-key": "migration_ops.create_foreign_key(...) (op's arguments) adds it without "
    "checking every row under a lock that stops writes",
    "add-unique-constraint": "migration_ops.create_unique_constraint(...) (op's arguments) builds "
    "its index without blocking writes, then adds it",
    "add-check-constraint": "migration_ops.create_check_constraint(...) (op's arguments) checks "
    "the rows without blocking writes (PostgreSQL; MariaDB on a shadow copy of the table)",
    "compile": "give each column a type every backend can create (a length for a VARCHAR: "
    "sa.String(255)), or a variant per backend (.with_variant(...))",
    "compile-alter": "change the table in batch mode, which SQLite needs to alter a constraint "
    "(`with op.batch_alter_table(table) as batch: batch.drop_constraint(...)`)",
}

# squawk's rules that one of the helpers answers: the helper is the alternative offered.
SQUAWK_ALTERNATIVES = {
    "adding-foreign-key-constraint": SAFE_ALTERNATIVES["add-foreign-key"],
    "disallowed-unique-constraint": SAFE_ALTERNATIVES["add-unique-constraint"],
    "constraint-missing-not-valid": SAFE_ALTERNATIVES["add-check-constraint"],
    "require-concurrent-index-creation": SAFE_ALTERNATIVES["index-not-concurrent"],
    "adding-required-field": SAFE_ALTERNATIVES["not-null-without-default"],
    "changing-column-type": SAFE_ALTERNATIVES["type-change"],
    "renaming-column": SAFE_ALTERNATIVES["rename"],
    "renaming-table": SAFE_ALTERNATIVES["rename"],
}

# The dialects every migration must be writable for: the three backends the project runs on.
DIALECTS: tuple[Dialect, ...] = (
    sqlite.dialect(),
    postgresql.dialect(),  # type: ignore[no-untyped-call]
    mysql.dialect(),
)

# The module whose helpers make these operations safe; calls through it are not flagged.
_HELPERS_MODULE = "app.migration_ops"


@dataclass(frozen=True)
class Finding:
    """One unsafe operation: where, which rule, and what to do instead."""

    rule: str
    path: str
    line: int
    message: str
    alternative: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.message} (instead: {self.alternative})"


def lint(revision_range: str | None = None) -> list[Finding]:
    """Every finding of the revisions in `revision_range` ("A:B", default: all of them)."""
    config = alembic_config()
    script = ScriptDirectory.from_config(config)
    lower, upper = _bounds(revision_range)
    findings: list[Finding] = []
    try:
        revisions = list(script.iterate_revisions(upper, lower))
    except ResolutionError as exc:  # the range's own words, not the database's revision
        raise ValueError(f"no such revision range {revision_range!r}: {exc}") from None
    for rev in reversed(revisions):
        findings += check_file(Path(rev.path))
        findings += _compile_findings(script, rev.revision, rev.path)
        down = rev.down_revision if isinstance(rev.down_revision, str) else None
        # squawk speaks of lines of the rendered SQL, not of the file: its rules are waived
        # for a whole file (`# lint: allow squawk/<rule>: <reason>` anywhere in it).
        waived = _allowed(Path(rev.path).read_text().splitlines(), None)
        findings += [f for f in _squawk(rev.revision, down, rev.path) if f.rule not in waived]
    return findings


def _bounds(revision_range: str | None) -> tuple[str, str]:
    if not revision_range:
        return "base", "heads"
    lower, sep, upper = revision_range.partition(":")
    if not sep:
        return "base", lower
    return lower or "base", upper or "heads"


# -- our checks -----------------------------------------------------------------------------------


def check_file(path: Path) -> list[Finding]:
    """Our own checks over the `upgrade()` of one migration file."""
    source = path.read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    upgrade = next(
        (
            node
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name == "upgrade"
        ),
        None,
    )
    if upgrade is None:
        return []
    created = {_first_string(call) for call in _op_calls(upgrade) if _name(call) == "create_table"}
    helpers = _helper_aliases(tree)
    batched = _batch_tables(upgrade)
    findings = []
    for call in _op_calls(upgrade):
        if _receiver(call) in helpers and _name(call) != "drop_column":
            continue  # made safe by the helper (a dropped column is lost all the same)
        for rule, message in _judge(call, created, batched.get(call)):
            if rule not in _allowed(lines, call.lineno):
                findings.append(
                    Finding(rule, str(path), call.lineno, message, SAFE_ALTERNATIVES[rule])
                )
    return findings


def _op_calls(function: ast.FunctionDef) -> Iterator[ast.Call]:
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            yield node


def _batch_tables(function: ast.FunctionDef) -> dict[ast.Call, str]:
    """The table of each call made on a batch operation (`with op.batch_alter_table("t") as
    batch_op: batch_op.create_index(...)`), whose arguments do not name it."""
    tables: dict[ast.Call, str] = {}
    for node in ast.walk(function):
        if not isinstance(node, ast.With):
            continue
        for item in node.items:
            opened, alias = item.context_expr, item.optional_vars
            if (
                isinstance(opened, ast.Call)
                and isinstance(opened.func, ast.Attribute)
                and _name(opened) == "batch_alter_table"
                and isinstance(alias, ast.Name)
                and (table := _first_string(opened)) is not None
            ):
                for statement in node.body:
                    for call in ast.walk(statement):
                        if isinstance(call, ast.Call) and _is_call_on(call, alias.id):
                            tables[call] = table
    return tables


def _is_call_on(call: ast.Call, receiver: str) -> bool:
    return (
        isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == receiver
    )


def _helper_aliases(tree: ast.Module) -> set[str]:
    """The names the file imports `app.migration_ops` under."""
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "app":
            aliases |= {a.asname or a.name for a in node.names if a.name == "migration_ops"}
        elif isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == _HELPERS_MODULE}
    return aliases


def _receiver(call: ast.Call) -> str | None:
    """`migration_ops` for `migration_ops.create_index(...)`, the dotted name in general."""
    assert isinstance(call.func, ast.Attribute)
    try:
        return ast.unparse(call.func.value)
    except ValueError:
        return None


def _name(call: ast.Call) -> str:
    assert isinstance(call.func, ast.Attribute)
    return call.func.attr


def _first_string(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _is_false(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _judge(
    call: ast.Call, created: set[str | None], batch_table: str | None
) -> Iterator[tuple[str, str]]:
    """The rules `call` breaks; `batch_table` is the table of the batch operation it is made
    on, if any (its arguments then do not name a table)."""
    name = _name(call)
    if name == "add_column":
        column = next((a for a in call.args if isinstance(a, ast.Call)), None)
        required = column is not None and _is_false(_keyword(column, "nullable"))
        if required and column is not None and _keyword(column, "server_default") is None:
            yield "not-null-without-default", "NOT NULL column added without a server default"
    elif name in ("drop_column", "drop_table"):
        yield name.replace("_", "-"), f"{name.replace('_', ' ')} loses data still in use"
    elif name == "rename_table" or (
        name == "alter_column" and _keyword(call, "new_column_name") is not None
    ):
        yield "rename", "renaming breaks the code still running against the old name"
    elif name == "alter_column" and _keyword(call, "type_") is not None:
        yield "type-change", "changing a column type rewrites the table under a lock"
    elif name == "create_index":
        table = call.args[1] if len(call.args) > 1 else _keyword(call, "table_name")
        table_name = batch_table or (table.value if isinstance(table, ast.Constant) else None)
        concurrently = _keyword(call, "postgresql_concurrently")
        on_new_table = table_name in created
        if not on_new_table and not (isinstance(concurrently, ast.Constant) and concurrently.value):
            yield "index-not-concurrent", "CREATE INDEX without CONCURRENTLY blocks writes"
    elif (
        name in _CONSTRAINTS
        and _receiver(call) == "op"  # not a batch operation's (SQLite's table copy)
        and _table_argument(call, _CONSTRAINTS[name]) not in created
    ):
        rule, what = _CONSTRAINT_RULES[name]
        yield rule, f"adding {what} checks every row while the table's writes wait"


# Alembic's constraint operations: the position of their table argument, and its keyword.
_CONSTRAINTS = {
    "create_foreign_key": (1, "source_table"),
    "create_unique_constraint": (1, "table_name"),
    "create_check_constraint": (1, "table_name"),
}
_CONSTRAINT_RULES = {
    "create_foreign_key": ("add-foreign-key", "a foreign key"),
    "create_unique_constraint": ("add-unique-constraint", "a unique constraint"),
    "create_check_constraint": ("add-check-constraint", "a check constraint"),
}


def _table_argument(call: ast.Call, where: tuple[int, str]) -> str | None:
    position, keyword = where
    node = call.args[position] if len(call.args) > position else _keyword(call, keyword)
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _allowed(lines: list[str], line: int | None) -> set[str]:
    """Rules waived on `line` or the line above it (anywhere, when `line` is None)."""
    nearby = lines if line is None else lines[max(line - 2, 0) : line]
    return {match.group(1) for text in nearby for match in _ALLOW.finditer(text)}


def _compile_findings(script: ScriptDirectory, revision: str, path: str) -> list[Finding]:
    """The directions of one revision that some backend's SQL cannot express."""
    findings = []
    for dialect in DIALECTS:
        for direction in ("upgrade", "downgrade"):
            problem = compile_problem(script, revision, dialect, direction)
            if problem is not None:
                # An operation the backend has no SQL for outside batch mode, or a type.
                kind = "compile-alter" if "No support for ALTER" in problem else "compile"
                findings.append(Finding("compile", path, 1, problem, SAFE_ALTERNATIVES[kind]))
    return findings


# -- squawk ---------------------------------------------------------------------------------------


def squawk_binary() -> str:
    """The squawk executable: on PATH, or beside this Python (a virtual environment's bin)."""
    beside = Path(sys.executable).with_name("squawk")
    binary = shutil.which("squawk") or (str(beside) if beside.exists() else None)
    if binary is None:
        raise FileNotFoundError(
            "app db lint needs squawk, which is not installed: "
            "`pip install squawk-cli` (it comes with this package's dependencies)"
        )
    return binary


def _squawk(revision: str, down: str | None, path: str) -> list[Finding]:
    """squawk over the PostgreSQL SQL of one revision."""
    binary = squawk_binary()
    sql = own_sql(render_sql(f"{down or 'base'}:{revision}"), revision)
    source = Path(path).read_text()
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
        handle.write(sql)
    try:
        result = subprocess.run(  # noqa: S603 - our own binary and file
            [binary, "--config", str(SQUAWK_CONFIG), "--reporter", "gcc", handle.name],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
    finally:
        Path(handle.name).unlink(missing_ok=True)
    findings = []
    sql_lines = sql.splitlines()
    for line in result.stdout.splitlines():
        match = re.match(r"^.*?:(\d+):\d+: \w+: ([\w-]+) (.*)$", line)
        if match:
            rule, message = match.group(2), match.group(3)
            if _a_helpers_own_step(rule, sql, sql_lines, int(match.group(1)), source):
                continue
            findings.append(
                Finding(
                    f"squawk/{rule}",
                    path,
                    0,
                    f"{message} (SQL line {match.group(1)})",
                    SQUAWK_ALTERNATIVES.get(rule, f"see https://squawkhq.com/docs/{rule}"),
                )
            )
    return findings


_NAME = r'(?:"(?:[^"]|"")+"|\w+)'
_END = r"(?=\s|;|$)"
_NOT_NULL_CHECK_DROP = re.compile(rf"DROP CONSTRAINT IF EXISTS ({_NAME})")
_RENAMED_COLUMN = re.compile(rf"RENAME COLUMN ({_NAME}) TO ({_NAME})")
_DROPPED_COLUMN = re.compile(rf"ALTER TABLE ({_NAME}) DROP COLUMN ({_NAME})")
_HELPER_FUNCTION_DROP = re.compile(r"DROP FUNCTION IF EXISTS app_re(type|name)_\w+_fn\(\)")
_TABLE_RENAME = re.compile(rf"ALTER TABLE ({_NAME}) RENAME TO ({_NAME})")
_VIEW_DROP = re.compile(rf"DROP VIEW IF EXISTS ({_NAME})")


def _unquoted(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def _a_helpers_own_step(rule: str, sql: str, lines: list[str], number: int, source: str) -> bool:
    """Whether the statement squawk flags at SQL line `number` is a step of a helper that
    loses nothing (`source`: the migration file's text)."""
    # squawk counts a statement from the blank line before it: look at the next few lines.
    nearby = "\n".join(lines[number - 1 : number + 2])
    check = _OWN_STEPS.get(rule)
    return check is not None and check(nearby, sql, source)


def _not_null_check_dropped(nearby: str, sql: str, _source: str) -> bool:
    """The `CHECK (col IS NOT NULL)` that `add_not_null_column` replaced by the column's own
    NOT NULL."""
    dropped = _NOT_NULL_CHECK_DROP.search(nearby)
    return (
        dropped is not None
        and _unquoted(dropped.group(1)).endswith("_not_null")
        and f"ADD CONSTRAINT {dropped.group(1)} CHECK" in sql
    )


def _retyped_copy_renamed(nearby: str, _sql: str, _source: str) -> bool:
    """`alter_column`'s swap: the retyped copy takes the old column's name."""
    swap = _RENAMED_COLUMN.search(nearby)
    if swap is None:
        return False
    copy, name = map(_unquoted, swap.groups())
    return copy == f"_{name}_retyped"[:63]


def _old_column_dropped(nearby: str, sql: str, _source: str) -> bool:
    """The old column dropped in `alter_column`'s swap (its copy renamed to its name in the
    same transaction), or at the end of a column rename (the triggers that kept both names in
    step dropped with it)."""
    found = _DROPPED_COLUMN.search(nearby)
    if found is None:
        return False
    table, column = found.groups()
    retyped = any(
        _unquoted(copy) == f"_{_unquoted(column)}_retyped"[:63] and name == column
        for copy, name in _RENAMED_COLUMN.findall(sql)
    )
    renamed = re.search(
        rf"DROP TRIGGER IF EXISTS app_rename_[0-9a-f]+ ON {re.escape(table)}{_END}", sql
    )
    return retyped or renamed is not None


def _helper_function_dropped(nearby: str, _sql: str, _source: str) -> bool:
    """The function that kept two columns in step (`alter_column`, a column rename)."""
    return _HELPER_FUNCTION_DROP.search(nearby) is not None


def _table_renamed_with_a_view(nearby: str, sql: str, _source: str) -> bool:
    """`rename_table`'s rename, which leaves a view under the old name."""
    renamed = _TABLE_RENAME.search(nearby)
    if renamed is None:
        return False
    old, new = map(re.escape, renamed.groups())
    view = rf"CREATE VIEW {old} AS SELECT \* FROM {new}{_END}"  # noqa: S608 - a pattern
    return re.search(view, sql) is not None


def _old_name_view_dropped(nearby: str, _sql: str, source: str) -> bool:
    """`finish_rename_table`'s drop of the view under the old name."""
    view = _VIEW_DROP.search(nearby)
    return view is not None and _unquoted(view.group(1)) in _finished_renames(source)


def _finished_renames(source: str) -> set[str]:
    """The old names the migration's `finish_rename_table` calls end."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "finish_rename_table"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return names


_OWN_STEPS = {
    "ban-drop-constraint": _not_null_check_dropped,
    "renaming-column": _retyped_copy_renamed,
    "ban-drop-column": _old_column_dropped,
    "ban-drop-function": _helper_function_dropped,
    "renaming-table": _table_renamed_with_a_view,
    "ban-drop-view": _old_name_view_dropped,
}
