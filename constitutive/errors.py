"""User-facing errors. The CLI prints them without a traceback and exits with code 2."""
from __future__ import annotations


class NeumatInputError(ValueError):
    """Bad input from the user: a file, a field, a value out of range."""


class DataError(NeumatInputError):
    """A problem in a data file, located by file, row (1-based line in the file) and column."""

    def __init__(self, message: str, file: str | None = None, row: int | None = None,
                 column: str | None = None):
        self.file, self.row, self.column, self.detail = file, row, column, message
        where = []
        if file is not None:
            where.append(f"file {file}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        super().__init__((", ".join(where) + ": " if where else "") + message)
