"""Incremental segments (issue 18): triggers note which people may have changed segment.

Every writer (portal, collector, scheduler, privacy desk, sync commands) changes people through
these tables, so the note is kept by SQLite itself and no writer can forget it. A row with
lead_id 0 means "everyone": a policy text or a segment's rule changed, so the next run is full.
`seq` only grows, so the segment job consumes exactly the notes it read, and a note written while
it runs waits for the next run.
"""
from peewee import *

# One trigger per change that can move a person in or out of a segment.
TRIGGERS = {
    "visit_ins": "AFTER INSERT ON visit WHEN NEW.passerby = 0 BEGIN "
                 "INSERT INTO segment_dirty (lead_id) SELECT lead_id FROM device WHERE id = NEW.device_id AND lead_id IS NOT NULL; END",
    "visit_del": "AFTER DELETE ON visit WHEN OLD.passerby = 0 BEGIN "
                 "INSERT INTO segment_dirty (lead_id) SELECT lead_id FROM device WHERE id = OLD.device_id AND lead_id IS NOT NULL; END",
    "visit_upd": "AFTER UPDATE ON visit BEGIN "
                 "INSERT INTO segment_dirty (lead_id) SELECT lead_id FROM device "
                 "WHERE id IN (OLD.device_id, NEW.device_id) AND lead_id IS NOT NULL; END",
    "device_link": "AFTER UPDATE OF lead_id ON device WHEN OLD.lead_id IS NOT NEW.lead_id BEGIN "
                   "INSERT INTO segment_dirty (lead_id) SELECT OLD.lead_id WHERE OLD.lead_id IS NOT NULL; "
                   "INSERT INTO segment_dirty (lead_id) SELECT NEW.lead_id WHERE NEW.lead_id IS NOT NULL; END",
    "device_del": "AFTER DELETE ON device WHEN OLD.lead_id IS NOT NULL BEGIN "
                  "INSERT INTO segment_dirty (lead_id) VALUES (OLD.lead_id); END",
    "consent_ins": "AFTER INSERT ON consent BEGIN INSERT INTO segment_dirty (lead_id) VALUES (NEW.lead_id); END",
    "consent_del": "AFTER DELETE ON consent BEGIN INSERT INTO segment_dirty (lead_id) VALUES (OLD.lead_id); END",
    # Language, verification, restriction, erasure: any change of the person's row.
    "lead_ins": "AFTER INSERT ON lead BEGIN INSERT INTO segment_dirty (lead_id) VALUES (NEW.id); END",
    "lead_upd": "AFTER UPDATE ON lead BEGIN INSERT INTO segment_dirty (lead_id) VALUES (NEW.id); END",
    "lead_del": "AFTER DELETE ON lead BEGIN INSERT INTO segment_dirty (lead_id) VALUES (OLD.id); END",
    # Which text version a consent was given on decides whether it counts: everyone.
    "policy_ins": "AFTER INSERT ON policy_version BEGIN INSERT INTO segment_dirty (lead_id) VALUES (0); END",
    "policy_upd": "AFTER UPDATE ON policy_version BEGIN INSERT INTO segment_dirty (lead_id) VALUES (0); END",
    "segment_ins": "AFTER INSERT ON segment BEGIN INSERT INTO segment_dirty (lead_id) VALUES (0); END",
    "segment_rule": "AFTER UPDATE OF rule ON segment WHEN OLD.rule IS NOT NEW.rule BEGIN "
                    "INSERT INTO segment_dirty (lead_id) VALUES (0); END",
}


def up(migrator, db):
    db.execute_sql("CREATE TABLE IF NOT EXISTS segment_dirty (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                   "lead_id INTEGER NOT NULL)")
    # The time-driven moves (returning to lapsed, a visit leaving a window) are found by the end of
    # a person's visits: the covering indexes are by start.
    db.execute_sql('CREATE INDEX IF NOT EXISTS visit_end_followed ON visit ("end", device_id) '
                   "WHERE passerby = 0 AND source = 'lan'")
    for name, body in TRIGGERS.items():
        db.execute_sql(f"CREATE TRIGGER IF NOT EXISTS segment_dirty_{name} {body}")
    db.execute_sql("INSERT INTO segment_dirty (lead_id) VALUES (0)")


def down(migrator, db):
    for name in TRIGGERS:
        db.execute_sql(f"DROP TRIGGER IF EXISTS segment_dirty_{name}")
    db.execute_sql("DROP INDEX IF EXISTS visit_end_followed")
    db.execute_sql("DROP TABLE IF EXISTS segment_dirty")
