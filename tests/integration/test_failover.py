"""A primary failover under a stream of writes, on a real pg_auto_failover formation: the
multi-host URL follows the new primary, writes resume, nothing committed is lost, nothing hangs."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from app.db.session import make_engine, make_session_factory
from app.migrations import upgrade
from app.repositories import UnitOfWork
from tests.integration.helpers import WriteStream, run_app, stored_item_ids
from tests.topologies import FailoverFormation

pytestmark = pytest.mark.backends("postgresql")


def test_writes_survive_a_failover_and_resume_on_the_new_primary(
    failover_formation: FailoverFormation,
) -> None:
    url = failover_formation.url()
    engine = make_engine(url, connect_timeout=2, statement_timeout=10, pool_size=3)
    upgrade(engine)
    factory = make_session_factory(engine)
    with UnitOfWork(factory) as uow:
        owner = uow.users.create({"email": "writer@example.com", "hashed_password": "h"}).id
        uow.commit()
    with engine.connect() as connection:
        old_primary = connection.scalar(text("SELECT inet_server_port()"))
    try:
        with WriteStream(factory, owner) as stream:
            time.sleep(2)
            started = time.monotonic()
            failover_formation.failover()
            time.sleep(5)
        failed = {name for _, name in stream.failures}
        assert failed, "no write failed: the failover did not interrupt the stream"
        # A unit cut off while committing is told its outcome is unknown (still unavailable),
        # where it could not be found out; one cut off before, lost (when its retries ran out).
        told = {
            "DatabaseUnavailableError",
            "ConnectionLostError",
            "CommitOutcomeUnknownError",
            "ReadOnlyError",
        }
        assert failed <= told
        times = sorted(at for at, _ in stream.committed)
        assert times[0] < started < times[-1], "no write on one side of the failover"
        # Writes resume within 15 s: no pause in the stream lasts longer.
        assert stream.longest_pause() < 15, f"no write for {stream.longest_pause():.1f} s"
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT inet_server_port()")) != old_primary
        missing = stream.committed_ids() - stored_item_ids(engine)
        assert not missing, f"{len(missing)} writes reported committed are not on the new primary"
    finally:
        engine.dispose()
    # The command line names the multi-host URL with its password masked.
    masked = run_app(
        "db", "info",
        database_url=url.set(password="s3cret").render_as_string(hide_password=False),
    )  # fmt: skip
    assert "s3cret" not in masked.stdout + masked.stderr
    assert "target_session_attrs=read-write" in masked.stdout
