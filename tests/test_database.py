from __future__ import annotations

import pytest

from service.database import async_url, plain_url
from service.errors import UserError


def test_plain_urls_get_the_asyncpg_driver() -> None:
    url = async_url("postgresql://app:secret@db.internal:6432/tierwise")
    assert (url.drivername, url.host, url.port, url.database) == (
        "postgresql+asyncpg",
        "db.internal",
        6432,
        "tierwise",
    )
    assert plain_url(url) == "postgresql://app:secret@db.internal:6432/tierwise"


def test_the_unix_socket_form_keeps_its_directory() -> None:
    url = async_url("postgresql://postgres@/tierwise?host=/var/run/postgresql")
    assert url.host is None and url.query == {"host": "/var/run/postgresql"}
    assert url.database == "tierwise"


def test_the_postgres_scheme_alias_is_accepted() -> None:
    assert async_url("postgres://u@h/d").drivername == "postgresql+asyncpg"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("mysql://root@localhost/x", "must start with postgresql://, not mysql://"),
        ("not a url", "is not a database URL"),
    ],
)
def test_other_urls_are_refused_with_a_reason(value: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        async_url(value)
