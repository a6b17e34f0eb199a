"""Chain segments kept as events arrive (issue 18): a row per person the chain's segments follow
(central/chainstat.py), filled here from the visits already kept (the `full` rebuild)."""


def up(migrator, db):
    db.execute_sql("""
        CREATE TABLE chain_stat (
            person_id INTEGER PRIMARY KEY REFERENCES person (id) ON DELETE CASCADE,
            language VARCHAR(255) NOT NULL, first_start TIMESTAMP NOT NULL, last_start TIMESTAMP NOT NULL,
            last_end TIMESTAMP NOT NULL, visits INTEGER NOT NULL, dwell DOUBLE PRECISION NOT NULL,
            recent TIMESTAMP[] NOT NULL, consents TEXT[] NOT NULL, waiting TEXT[] NOT NULL)""")
    db.execute_sql("CREATE INDEX chain_stat_last_end ON chain_stat (last_end)")
    db.execute_sql("CREATE INDEX chain_stat_last_start ON chain_stat (last_start)")
    from central import chainstat
    chainstat.rebuild(db.cursor())


def down(migrator, db):
    db.execute_sql("DROP TABLE chain_stat")
