"""The erasure ledger's mark (portal/erasure_ledger.py): the last ledger line this database applied,
so that a database restored from a backup redoes the erasures and withdrawals made since."""
from peewee import AutoField, BigIntegerField, Model


def up(migrator, db):
    class LedgerMark(Model):
        id = AutoField()
        seq = BigIntegerField()

        class Meta:
            database = db
            table_name = 'ledger_mark'

    db.create_tables([LedgerMark])


def down(migrator, db):
    db.execute_sql('DROP TABLE IF EXISTS ledger_mark')
