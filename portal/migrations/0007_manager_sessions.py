"""Panel sessions held on the server, and second-factor failures counted apart from passwords."""
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_column('manager', 'second_factor_failures', IntegerField(default=0)))

    class Manager(Model):
        class Meta:
            database = db
            table_name = 'manager'

    class ManagerSession(Model):
        token_hash = CharField(unique=True)
        manager = ForeignKeyField(Manager, on_delete='CASCADE')
        stage = CharField()
        created_at = DateTimeField()
        last_seen_at = DateTimeField()
        ip = CharField(null=True)

        class Meta:
            database = db
            table_name = 'manager_session'
    db.create_tables([ManagerSession])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('manager_session'))
    migrator.migrate(migrator.drop_column('manager', 'second_factor_failures'))
