"""Visits by month (issue 18): `visit` becomes PARTITION BY RANGE (start), one partition per calendar
month (UTC) and a default one, without foreign keys (central/visits.py says why and what keeps
them true). The rows move in this migration's transaction, under an ACCESS EXCLUSIVE lock: the
central serves nothing meanwhile (docs/operations.md gives the time per million visits).

Month partitions are made for every month from the oldest visit's to visits.AHEAD months past now
(visits older than visits.MAX_BACK months go to the default partition, for the purge);
the central's start then adds the months back to its retention cutoff (visits.ensure).
"""
import datetime

COLUMNS = 'id, store_id, device_id, start, "end", passerby'


def up(migrator, db):
    from central import visits
    cur = db.cursor()
    cur.execute("LOCK TABLE visit IN ACCESS EXCLUSIVE MODE")
    cur.execute("ALTER TABLE visit RENAME TO visit_unpartitioned")
    for index in ("visit_pkey", "visit_store_id", "visit_store_id_start", "visit_device_id"):
        cur.execute(f"ALTER INDEX IF EXISTS {index} RENAME TO {index.replace('visit', 'visit_unpartitioned', 1)}")
    cur.execute("""
        CREATE TABLE visit (
            id BIGINT NOT NULL DEFAULT nextval('visit_id_seq'), store_id VARCHAR(255) NOT NULL,
            device_id BIGINT NOT NULL, start TIMESTAMP NOT NULL, "end" TIMESTAMP NOT NULL,
            passerby BOOLEAN NOT NULL) PARTITION BY RANGE (start)""")
    cur.execute("ALTER SEQUENCE visit_id_seq OWNED BY visit.id")  # else it goes with the old table
    cur.execute(f"CREATE TABLE {visits.DEFAULT} PARTITION OF visit DEFAULT")
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    current = visits.month_of(now)
    floor = visits.add_months(current, -visits.MAX_BACK)
    cur.execute("SELECT min(start) FROM visit_unpartitioned WHERE start >= %s", (floor,))
    oldest = cur.fetchone()[0]
    month = visits.month_of(oldest) if oldest else current
    while month <= visits.add_months(current, visits.AHEAD):
        following = visits.add_months(month, 1)
        cur.execute(f"CREATE TABLE {visits.name_of(month)} PARTITION OF visit FOR VALUES FROM (%s) TO (%s)",
                    (month, following))
        month = following
    # Rows first, keys and indexes after: one build per partition instead of an update per row.
    cur.execute(f"INSERT INTO visit ({COLUMNS}) SELECT {COLUMNS} FROM visit_unpartitioned")
    cur.execute("DROP TABLE visit_unpartitioned")
    cur.execute("ALTER TABLE visit ADD CONSTRAINT visit_pkey PRIMARY KEY (id, start)")
    cur.execute("CREATE INDEX visit_store_id_start ON visit (store_id, start)")
    cur.execute("CREATE INDEX visit_device_id ON visit (device_id)")
    cur.execute("ANALYZE visit")


def down(migrator, db):
    """Back to one table with its foreign keys (visits of devices gone are dropped on the way)."""
    cur = db.cursor()
    cur.execute("LOCK TABLE visit IN ACCESS EXCLUSIVE MODE")
    cur.execute("ALTER TABLE visit RENAME TO visit_partitioned")
    for index in ("visit_pkey", "visit_store_id", "visit_store_id_start", "visit_device_id"):
        cur.execute(f"ALTER INDEX IF EXISTS {index} RENAME TO {index.replace('visit', 'visit_partitioned', 1)}")
    cur.execute("""
        CREATE TABLE visit (
            id BIGINT NOT NULL DEFAULT nextval('visit_id_seq') PRIMARY KEY,
            store_id VARCHAR(255) NOT NULL REFERENCES store (id) ON DELETE CASCADE,
            device_id BIGINT NOT NULL REFERENCES device (id) ON DELETE CASCADE,
            start TIMESTAMP NOT NULL, "end" TIMESTAMP NOT NULL, passerby BOOLEAN NOT NULL)""")
    cur.execute("ALTER SEQUENCE visit_id_seq OWNED BY visit.id")
    cur.execute(f"INSERT INTO visit ({COLUMNS}) SELECT {', '.join('v.' + c for c in COLUMNS.split(', '))} "
                "FROM visit_partitioned v JOIN device d ON d.id = v.device_id AND d.store_id = v.store_id")
    cur.execute("DROP TABLE visit_partitioned")
    cur.execute("CREATE INDEX visit_store_id_start ON visit (store_id, start)")
    cur.execute("CREATE INDEX visit_store_id ON visit (store_id)")
    cur.execute("CREATE INDEX visit_device_id ON visit (device_id)")
