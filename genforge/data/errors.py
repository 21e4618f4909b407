"""Kept for old imports: the errors live in `genforge.errors`."""

from genforge.errors import DataError

__all__ = ["DataError"]
