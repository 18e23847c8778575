"""Races on real transactions: each contender runs on a thread with its own connection."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection

JOIN_SECONDS = 30


def thread_start(target: Callable[[], Any], results: list[Any]) -> threading.Thread:
    """Run ``target`` on a new thread; its result, or the exception it raised, joins ``results``."""

    def run() -> None:
        try:
            results.append(target())
        except Exception as exc:  # surfaced by the test's assertions, not swallowed
            results.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_until_a_backend_waits_for_a_lock() -> None:
    """Block until another connection of this test database is waiting on a row or index lock."""
    with connection.cursor() as cursor:
        for _ in range(3000):
            cursor.execute(
                # A unique-index wait is on the other transaction's id, which has no database
                # column in pg_locks; the waiting backend's own database tells us it is ours.
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE NOT l.granted AND a.datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return
            threading.Event().wait(0.01)
    raise AssertionError("the second contender never reached the database")
