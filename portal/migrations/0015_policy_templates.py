"""Policy texts as templates (issue 15/16): the template a version was rendered from, and whether it
differs materially from the version before it (a material change asks people again)."""
from peewee import SQL, BooleanField, TextField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column('policy_version', 'template', TextField(null=True)),
        migrator.add_column('policy_version', 'material', BooleanField(default=True, constraints=[SQL("DEFAULT 1")])),
    )
    # Before this, an edit of the WiFi terms asked people again and any other edit did not: kept so.
    db.execute_sql("UPDATE policy_version SET material = 0 WHERE document != 'wifi_terms' OR id = "
                   "(SELECT min(id) FROM policy_version p WHERE p.document = policy_version.document "
                   "AND p.language = policy_version.language)")
    db.execute_sql('CREATE INDEX IF NOT EXISTS policy_version_language_document_material_id ON policy_version (language, document, material, id)')


def down(migrator, db):
    db.execute_sql('DROP INDEX IF EXISTS policy_version_language_document_material_id')
    migrator.migrate(migrator.drop_column('policy_version', 'material'), migrator.drop_column('policy_version', 'template'))
