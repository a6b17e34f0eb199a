"""Breach descriptions and measures encrypted at rest (issue 15), as the leads' details are. The
migration has no key: rows written before it are sealed by compliance.seal_breaches at the next
start of the panel's compliance page, and read as plain text until then."""
from peewee import BlobField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column('breach', 'description_enc', BlobField(null=True)),
        migrator.add_column('breach', 'measures_enc', BlobField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('breach', 'measures_enc'), migrator.drop_column('breach', 'description_enc'))
