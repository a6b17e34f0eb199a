"""Issue 16: name words as blind indexes (the panel's name search) and a manager's own email.

The words of existing names are filled in by the `name_index` job (the migration has no key to
compute them with); the trigger drops a person's words whenever the name changes or is erased."""
from peewee import *

TRIGGER = """CREATE TRIGGER IF NOT EXISTS lead_name_words_stale AFTER UPDATE OF name_enc ON lead
WHEN NEW.name_enc IS NOT OLD.name_enc
BEGIN DELETE FROM lead_name_word WHERE lead_id = NEW.id; END"""


def up(migrator, db):
    class Lead(Model):
        class Meta:
            database = db
            table_name = 'lead'

    class LeadNameWord(Model):
        lead = ForeignKeyField(Lead, on_delete='CASCADE', index=True)
        word = CharField()

        class Meta:
            database = db
            table_name = 'lead_name_word'
            primary_key = CompositeKey('word', 'lead')
    db.create_tables([LeadNameWord])
    db.execute_sql(TRIGGER)
    migrator.migrate(
        migrator.add_column('manager', 'email_enc', BlobField(null=True)),
        migrator.add_column('manager', 'email_index', CharField(null=True)),
        migrator.add_index('manager', ('email_index',), True),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_index('manager', 'manager_email_index'),
        migrator.drop_column('manager', 'email_index'),
        migrator.drop_column('manager', 'email_enc'),
    )
    db.execute_sql('DROP TRIGGER IF EXISTS lead_name_words_stale')
    db.execute_sql('DROP TABLE lead_name_word')
