from playhouse.schema_diff import diff_models

from portal.db import database, init_db, migrate_db
from portal.models import MODELS, Lead


def test_migrations_build_exactly_the_models(tmp_path):
    init_db(tmp_path / "f.db")
    try:
        with database.connection_context():
            diff = diff_models(database, list(MODELS))
            assert not diff, f"models and migrations disagree: {diff}"
            assert migrate_db() == []  # a second run has nothing to do
    finally:
        database.close()


def test_pragmas_make_commits_durable(tmp_path):
    init_db(tmp_path / "f.db")
    try:
        with database.connection_context():
            assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert database.execute_sql("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
            assert database.execute_sql("PRAGMA busy_timeout").fetchone()[0] == 5000
    finally:
        database.close()


def test_data_survives_reopening(tmp_path):
    path = tmp_path / "f.db"
    init_db(path)
    with database.connection_context():
        Lead.create(language="en")
    database.close()
    init_db(path)
    try:
        with database.connection_context():
            assert Lead.select().count() == 1
    finally:
        database.close()
