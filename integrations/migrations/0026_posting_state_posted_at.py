"""An index for /metrics' latency histogram, which reads the postings posted within
its window (portal/metrics.py filters by state and posted_at).

On PostgreSQL the index is built CONCURRENTLY: a plain CREATE INDEX would block every
write to the postings table (the workers' posting) for as long as the build takes on
a large table. That needs a migration outside a transaction (`atomic = False`); the
migration state gets the same `AddIndex` either way.
"""

from django.db import migrations, models

INDEX = models.Index(fields=["state", "posted_at"], name="posting_state_posted_at")


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS posting_state_posted_at "
            "ON integrations_posting (state, posted_at)"
        )
    else:
        schema_editor.add_index(apps.get_model("integrations", "Posting"), INDEX)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP INDEX CONCURRENTLY IF EXISTS posting_state_posted_at"
        )
    else:
        schema_editor.remove_index(apps.get_model("integrations", "Posting"), INDEX)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("integrations", "0025_override_signatures"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="posting", index=INDEX)],
            database_operations=[migrations.RunPython(create, drop, atomic=False)],
        ),
    ]
