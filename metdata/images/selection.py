"""Which objects the images stage takes: a target, a ``--where`` expression, or every image.

Runs on the client over the ``objects/`` table. ``--where`` is a SQL boolean expression over
the metadata columns, evaluated by DuckDB on the Arrow table in memory (no server, offline).
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from metdata.core.statuses import Status
from metdata.core.targets import label_table, resolve
from metdata.errors import UserError


class SelectionError(UserError):
    """The selection is malformed or empty; the message says how to fix it."""


def select(table: pa.Table, url_field: str, target: str | None = None, where: str | None = None) -> pa.Table:
    """Keep the rows that have (or may have) an image and match the target or expression.

    Rows looked up through the API need a non-empty image URL; rows from the CSV (status
    ``csv``) have no URLs, so public-domain ones are kept and looked up later.

    Raises:
        TargetError: an unknown target or a bad target file.
        SelectionError: a malformed expression, or nothing selected.
    """
    has_image = pc.or_(
        pc.and_(pc.equal(table["status"], Status.OK.value), pc.not_equal(pc.fill_null(table[url_field], ""), "")),
        pc.and_(pc.equal(table["status"], Status.CSV.value), pc.fill_null(table["isPublicDomain"], False)),
    )
    table = table.filter(has_image)
    if target is not None:
        table = table.filter(pc.is_valid(label_table(table, resolve(target))))
    if where:
        table = _where(table, where)
    if table.num_rows == 0:
        what = f"target {target!r}" if target else f"--where {where!r}" if where else "objects with images"
        raise SelectionError(f"the selection ({what}) is empty: ingest more objects or widen it")
    return table


def _where(table: pa.Table, expression: str) -> pa.Table:
    """The rows matching one boolean SQL expression over the table's columns.

    The expression is parsed as one expression (never a statement), and its DuckDB parse tree must
    use only the constructs :func:`_refusal` allows (columns of the table, constants, comparisons,
    a few cheap scalar functions): nothing that reads settings, builds lists or strings of any size,
    or runs a subquery. It is then evaluated by a DuckDB connection that cannot touch files or the
    network and whose settings are locked: a condition over the metadata, nothing else.

    Raises:
        SelectionError: too long, not one expression, a construct outside the allowed ones, or a
            type error while evaluating.
    """
    import duckdb

    if len(expression) > MAX_WHERE:
        raise SelectionError(f"malformed --where: {len(expression)} characters, more than {MAX_WHERE}. {_HINT}")
    config = {
        "enable_external_access": False,
        "autoload_known_extensions": False,
        "autoinstall_known_extensions": False,
        "lock_configuration": True,
    }
    with duckdb.connect(config=config) as con:
        try:
            parsed = duckdb.SQLExpression(expression)  # exactly one expression: no statements
            sql = "SELECT json_serialize_sql(?), json_serialize_sql('SELECT 1 WHERE true')"
            tree, plain = con.execute(sql, [f"SELECT 1 WHERE {parsed}"]).fetchall()[0]
            condition = _where_clause(json.loads(tree), json.loads(plain))
            columns = {name.lower() for name in table.column_names}
            why = "it is not one condition" if condition is None else _refusal(condition, columns)
        except RecursionError:
            why = "it is nested too deeply"
        except duckdb.Error as exc:
            why = str(exc).splitlines()[0].rstrip(".")  # DuckDB's words about the text itself
        if why is not None:
            raise SelectionError(f"malformed --where {expression!r}: {why}. {_HINT}")
        try:
            ids = con.from_arrow(table).filter(parsed).select("objectID").to_arrow_table()
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0].rstrip(".")  # a type mismatch, a bad regular expression
            raise SelectionError(f"malformed --where {expression!r}: {message}. {_HINT}") from exc
    return table.filter(pc.is_in(table["objectID"], ids["objectID"]))


MAX_WHERE = 2000
"""The longest ``--where`` expression, in characters."""

_SCALAR_FUNCTIONS = (
    "abs", "contains", "ends_with", "length", "lower", "ltrim", "prefix", "regexp_full_match",
    "regexp_matches", "rtrim", "starts_with", "strlen", "suffix", "trim", "upper", "year",
)  # fmt: skip
_FUNCTIONS = frozenset(
    (
        *_SCALAR_FUNCTIONS,
        *("~~", "!~~", "~~*", "!~~*", "~~~"),  # [NOT] LIKE, [NOT] ILIKE, GLOB
        *("like_escape", "not_like_escape", "ilike_escape", "not_ilike_escape"),  # ... ESCAPE '\\'
        *("+", "-", "*", "/", "%", "||"),
    )
)
"""The functions and operators ``--where`` may call, by the names DuckDB's parse tree gives them."""
_CAST_TYPES = frozenset(
    ("BOOLEAN", "BOOL", "TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "HUGEINT", "FLOAT", "REAL", "DOUBLE",
     "DECIMAL", "NUMERIC", "VARCHAR", "TEXT", "STRING", "DATE", "TIMESTAMP")
)  # fmt: skip
_OPERATORS = frozenset(
    ("OPERATOR_NOT", "COMPARE_IN", "COMPARE_NOT_IN", "OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL", "OPERATOR_COALESCE")
)
_CONSTRUCTS = {
    "SUBQUERY": "a subquery",
    "WINDOW": "a window function",
    "LAMBDA": "a lambda",
    "STAR": "*",
    "PARAMETER": "a parameter",
    "COLLATE": "COLLATE",
}
_HINT = (
    "Write one SQL condition over the metadata columns, e.g. \"department = 'Asian Art' AND "
    'objectBeginDate > 1600", using only: column names, constants, comparisons, AND/OR/NOT, IN (list), '
    "IS [NOT] NULL, BETWEEN, [NOT] LIKE/ILIKE/GLOB/SIMILAR TO, CAST/TRY_CAST to a scalar type, CASE, "
    f"COALESCE, + - * / % || and the functions {', '.join(_SCALAR_FUNCTIONS)}"
)


def _where_clause(tree: dict, plain: dict) -> dict | None:
    """The condition of a ``json_serialize_sql`` tree of ``SELECT 1 WHERE ...``, if the rest is as in ``plain``.

    >>> plain = {"error": False, "statements": [{"node": {"type": "SELECT_NODE", "where_clause": True}}]}
    >>> _where_clause({"error": False, "statements": [{"node": {"type": "SELECT_NODE", "where_clause": 2}}]}, plain)
    2
    >>> _where_clause({"error": False, "statements": [{"node": {"type": "SET_OPERATION_NODE"}}]}, plain) is None
    True
    """

    def without_condition(parsed: dict) -> tuple[dict | None, list[dict]]:
        statements = [{"node": dict(s["node"])} for s in parsed.get("statements") or []]  # parameters: refused below
        return (statements[0]["node"].pop("where_clause", None) if statements else None), statements

    condition, rest = without_condition(tree)
    return condition if not tree.get("error") and rest == without_condition(plain)[1] else None


def _refusal(node: dict, columns: set[str]) -> str | None:
    """Why a DuckDB parse-tree expression is not allowed in ``--where`` (None: it is allowed).

    An allowlist: column references to ``columns`` (lower-case names), constants, comparisons,
    AND/OR/NOT, IN lists, IS [NOT] NULL, BETWEEN, CAST to a scalar type, CASE, COALESCE and the
    functions of ``_FUNCTIONS``. Anything else (lists, lambdas, subqueries, settings) is named.

    >>> col = {"class": "COLUMN_REF", "column_names": ["title"]}
    >>> const = {"class": "CONSTANT", "literal": {"kind": "STRING", "text": "Lotus"}}
    >>> call = lambda name, *args: {"class": "FUNCTION", "function_name": name, "schema": "", "catalog": "",
    ...     "filter": None, "order_bys": {"orders": []}, "distinct": False, "export_state": False,
    ...     "arguments": [{"name": "", "expression": a} for a in args]}
    >>> _refusal(call("regexp_matches", col, const), {"title"}) is None
    True
    >>> _refusal(call("~~*", col, const), {"title"}) is None
    True
    >>> _refusal({"class": "COMPARISON", "left": call("length", call("range", const)), "right": const}, {"title"})
    'range() is not allowed'
    >>> _refusal(call("current_setting", const), {"title"})
    'current_setting() is not allowed'
    >>> _refusal(col, {"department"})
    "unknown column 'title'"
    >>> _refusal({"class": "SUBQUERY"}, {"title"})
    'a subquery is not allowed'
    """
    kind = node.get("class")
    if kind == "CONSTANT":
        return None
    if kind == "COLUMN_REF":
        names = node["column_names"]
        return None if len(names) == 1 and names[0].lower() in columns else f"unknown column {'.'.join(names)!r}"
    if kind == "FUNCTION":
        name = node["function_name"]
        if name not in _FUNCTIONS or node["schema"] or node["catalog"]:
            return f"{'.'.join(filter(None, (node['catalog'], node['schema'], name)))}() is not allowed"
        if node["filter"] is not None or node["order_bys"]["orders"] or node["distinct"] or node["export_state"]:
            return f"{name}() with FILTER, ORDER BY or DISTINCT is not allowed"
        if any(argument["name"] for argument in node["arguments"]):
            return f"{name}() with named arguments is not allowed"
        children = [argument["expression"] for argument in node["arguments"]]
    elif kind == "CAST":
        cast = node["type_expr"]
        if cast["type_name"].upper() not in _CAST_TYPES or any(c.get("class") != "CONSTANT" for c in cast["children"]):
            return f"a cast to {cast['type_name']} is not allowed"
        children = [node["child"]]
    elif kind in ("CONJUNCTION", "OPERATOR") and (kind == "CONJUNCTION" or node["type"] in _OPERATORS):
        children = node["children"]
    elif kind == "COMPARISON":
        children = [node["left"], node["right"]]
    elif kind == "BETWEEN":
        children = [node["input"], node["lower"], node["upper"]]
    elif kind == "CASE":
        children = [e for check in node["case_checks"] for e in (check["when_expr"], check["then_expr"])]
        children.append(node["else_expr"])
    else:
        return f"{_CONSTRUCTS.get(kind) or node.get('type', kind)} is not allowed"
    return next((why for child in children if (why := _refusal(child, columns)) is not None), None)
