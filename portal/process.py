"""What the appliance's long-running processes set first, before anything is imported (no click
here: `python -m portal.scheduler` keeps the command line's library out of the scheduler)."""
from __future__ import annotations


def appliance_process() -> None:
    """Called first by the appliance's long-running processes (portal, collector, demo, the
    scheduler) and by each job's child (`footfall jobs run`).

    They never talk to PostgreSQL, but peewee imports psycopg2 whenever it is installed (the
    central store's extra, or a development install): libpq with its TLS, Kerberos and LDAP
    libraries, about 11 MB in every process (tests/perf/bench_appliance.py). Marking it absent
    before peewee is imported keeps it out; a process that imported it already is left alone.
    And two malloc arenas instead of one per thread (few_malloc_arenas)."""
    import sys
    if "peewee" not in sys.modules:
        sys.modules.setdefault("psycopg2", None)  # type: ignore[arg-type]
    few_malloc_arenas()


def few_malloc_arenas(arenas: int = 2) -> bool:
    """glibc gives each thread that allocates its own malloc arena (up to 8 per core), and each
    keeps what it freed: about 6 MB in the portal's 8 server threads after load, as much as going
    down to 4 threads (tests/perf/bench_appliance.py). Two arenas suit processes whose threads
    mostly wait on the network and the database. What MALLOC_ARENA_MAX does; one set in the
    environment wins. False where the C library is not glibc (no mallopt)."""
    import ctypes
    import os

    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(-8, arenas) == 1  # M_ARENA_MAX (malloc.h)
