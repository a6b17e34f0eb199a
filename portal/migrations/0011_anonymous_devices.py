"""Anonymous by default (issue 15): devices counted under a pseudonym, and the raw records of
devices nobody signed in with turned into such pseudonyms, one per device and local day.

Before this, the collector stored every device's MAC, hostname and DHCP fingerprint and synced its
visits. A device with no person behind it (lead_id NULL, no authorization) now becomes one anonymous
device per local day of its visits and runs in progress, under a random name (a key used once and
never kept), with only its randomized bit; the MAC rows go, and so do the visit.closed events that
named them. secure_delete (portal/db.py) zeroes what the deleted rows held."""


def up(migrator, db):
    # Plain ALTER TABLE (no table rebuild): a box that ran main while this change was reverted has
    # later migrations already, and their triggers on visit and device (0021) break on a rebuild.
    sql = db.execute_sql
    sql("ALTER TABLE device ADD COLUMN anonymous INTEGER NOT NULL DEFAULT 0")
    sql("CREATE INDEX device_anonymous_last_seen ON device (anonymous, last_seen)")
    sql("CREATE TEMP TABLE legacy AS SELECT id, mac, randomized FROM device d WHERE d.lead_id IS NULL AND d.anonymous = 0 "
        "AND NOT EXISTS (SELECT 1 FROM \"authorization\" a WHERE a.device_id = d.id)")
    sql("CREATE TEMP TABLE legacy_day AS SELECT device_id AS old, day, min(first) AS first, max(last) AS last, "
        "'anon-' || lower(hex(randomblob(16))) AS name FROM ("
        "  SELECT v.device_id, date(v.start, 'localtime') AS day, v.start AS first, v.\"end\" AS last FROM visit v "
        "  WHERE v.device_id IN (SELECT id FROM legacy) "
        "  UNION ALL SELECT r.device_id, date(r.start, 'localtime'), r.start, r.last FROM open_run r "
        "  WHERE r.device_id IN (SELECT id FROM legacy)) GROUP BY device_id, day")
    sql("CREATE INDEX temp.legacy_day_old ON legacy_day (old, day)")
    sql("INSERT INTO device (mac, first_seen, last_seen, randomized, anonymous) "
        "SELECT x.name, x.first, x.last, l.randomized, 1 FROM legacy_day x JOIN legacy l ON l.id = x.old")
    for table, column in (("visit", "start"), ("open_run", "start")):
        sql(f"UPDATE {table} SET device_id = (SELECT d.id FROM legacy_day x JOIN device d ON d.mac = x.name "
            f"WHERE x.old = {table}.device_id AND x.day = date({table}.{column}, 'localtime')) "
            f"WHERE device_id IN (SELECT id FROM legacy)")
    sql("DELETE FROM outbox_event WHERE topic = 'visit.closed' AND json_extract(payload, '$.device') IN (SELECT mac FROM legacy)")
    sql("DELETE FROM device WHERE id IN (SELECT id FROM legacy)")
    sql("DROP TABLE legacy")
    sql("DROP TABLE legacy_day")


def down(migrator, db):
    db.execute_sql("DROP INDEX device_anonymous_last_seen")
    db.execute_sql("ALTER TABLE device DROP COLUMN anonymous")
