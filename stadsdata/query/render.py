"""Query options back to their text: for links that repeat a query (``@iot.nextLink`` inside ``$expand``).

``render_options(parse_options(q))`` means the same as ``q``; it is not
character-for-character the same (parentheses are added, spaces normalised).
"""

from __future__ import annotations

import datetime as dt

from stadsdata.query.ast import BinaryOp, Call, Expand, Expr, Literal, OrderBy, Path, QueryOptions, UnaryOp


def _duration(value: dt.timedelta) -> str:
    sign = "-" if value < dt.timedelta(0) else ""
    total = abs(value)
    seconds = total.seconds + total.microseconds / 1_000_000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{sign}P{total.days}DT{int(hours)}H{int(minutes)}M"
    return text + (f"{secs:.6f}".rstrip("0").rstrip(".") if secs else "0") + "S"


def _literal(lit: Literal) -> str:
    value = lit.value
    if lit.type == "string":
        assert isinstance(value, str)
        return "'" + value.replace("'", "''") + "'"
    if lit.type == "null":
        return "null"
    if lit.type == "bool":
        return "true" if value else "false"
    if lit.type == "float":
        text = repr(float(value))  # type: ignore[arg-type]
        return text if any(c in text for c in ".eE") else text + ".0"
    if lit.type == "duration":
        assert isinstance(value, dt.timedelta)
        return f"duration'{_duration(value)}'"
    if lit.type == "geometry":
        return f"geography'{value}'"
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def render_expr(expr: Expr) -> str:
    if isinstance(expr, Literal):
        return _literal(expr)
    if isinstance(expr, Path):
        return "/".join(expr.segments)
    if isinstance(expr, Call):
        return f"{expr.name}({','.join(render_expr(a) for a in expr.args)})"
    if isinstance(expr, UnaryOp):
        inner = render_expr(expr.operand)
        return f"not ({inner})" if expr.op == "not" else f"-({inner})"
    assert isinstance(expr, BinaryOp)
    return f"({render_expr(expr.left)}) {expr.op} ({render_expr(expr.right)})"


def _orderby(items: tuple[OrderBy, ...]) -> str:
    return ",".join(render_expr(o.expr) + (" desc" if o.descending else " asc") for o in items)


def _expand(items: tuple[Expand, ...]) -> str:
    parts = []
    for item in items:
        inner = render_options(item.options)
        parts.append(item.relation + (f"({';'.join(f'{k}={v}' for k, v in inner.items())})" if inner else ""))
    return ",".join(parts)


def render_options(options: QueryOptions) -> dict[str, str]:
    """The options as query parameters (``{"$filter": "…", …}``), only those that were given."""
    out: dict[str, str] = {}
    if options.filter is not None:
        out["$filter"] = render_expr(options.filter)
    if options.orderby:
        out["$orderby"] = _orderby(options.orderby)
    if options.select is not None:
        out["$select"] = ",".join(options.select)
    if options.expand:
        out["$expand"] = _expand(options.expand)
    if options.top is not None:
        out["$top"] = str(options.top)
    if options.skip is not None:
        out["$skip"] = str(options.skip)
    if options.count is not None:
        out["$count"] = "true" if options.count else "false"
    if options.result_format is not None:
        out["$resultFormat"] = options.result_format
    return out
