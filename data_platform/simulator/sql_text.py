"""Small builders of DuckDB SQL text shared by the event and payment renderers."""

from __future__ import annotations


def sql_list(values: tuple[str, ...]) -> str:
    """A DuckDB list literal of strings, indexed 1-based: `[...][code + 1]` maps codes to text."""
    return "[" + ", ".join(f"'{value}'" for value in values) + "]"


def decimal_text(cents: str) -> str:
    """An expression spelling integer cents as a decimal with two places: -1234 -> '-12.34'."""
    return (
        f"(CASE WHEN {cents} < 0 THEN '-' ELSE '' END || (abs({cents}) // 100)::VARCHAR"
        f" || '.' || lpad((abs({cents}) % 100)::VARCHAR, 2, '0'))"
    )
