"""Covering indexes for the dashboard (visits by time) and segments (visits by device)."""


def up(migrator, db):
    db.execute_sql('CREATE INDEX IF NOT EXISTS visit_start_passerby_source_device_id_end ON visit (start, passerby, source, device_id, "end")')
    db.execute_sql('CREATE INDEX IF NOT EXISTS visit_device_id_passerby_source_start_end ON visit (device_id, passerby, source, start, "end")')


def down(migrator, db):
    db.execute_sql("DROP INDEX IF EXISTS visit_start_passerby_source_device_id_end")
    db.execute_sql("DROP INDEX IF EXISTS visit_device_id_passerby_source_start_end")
