"""URL path converters shared by every product's urls.

`<id:name>` is `<int:name>` bounded to the 64-bit range the databases' id columns hold.
Django's `int` converter passes any number of digits to the ORM: PostgreSQL answers "no
such row" for 23967913928378941440, but SQLite (the `make run` database) raises
OverflowError, a 500. A path whose id cannot be a row id is simply not matched: a 404 on
every database, before any query.
"""
from __future__ import annotations

from django.urls import register_converter

# BigAutoField ids are signed 64-bit on PostgreSQL and SQLite alike.
MAX_ID = 2**63 - 1


class BoundedIntConverter:
    """Whole numbers from 0 to `MAX_ID`; anything larger does not match (so the URL is a 404)."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValueError(f"{value} is larger than any id")  # Django treats this as "no match"
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))


def register() -> None:
    """Register `<id:...>`; called once, from `PosthogAppConfig.ready()`, before any URLconf loads."""
    register_converter(BoundedIntConverter, "id")
