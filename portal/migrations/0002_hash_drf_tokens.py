"""Move keys from DRF's `authtoken_token` (stored in plain text) to hashed ApiTokens.

Clients keep their keys; the plain-text table is dropped. Nothing to do on a database
that never had `rest_framework.authtoken` installed.
"""

import hashlib

from django.db import migrations

OLD_TABLE = "authtoken_token"


def hash_old_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if OLD_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("portal", "ApiToken")
    quoted = schema_editor.quote_name(OLD_TABLE)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id, created FROM {quoted}")
        rows = cursor.fetchall()
    for key, user_id, created in rows:
        token = ApiToken.objects.create(
            user_id=user_id,
            name="Moved from the plain-text token table",
            prefix=key[:8],
            digest=hashlib.sha256(key.encode()).hexdigest(),
        )
        ApiToken.objects.filter(pk=token.pk).update(created_at=created)
    schema_editor.execute(f"DROP TABLE {quoted}")


class Migration(migrations.Migration):
    dependencies = [("portal", "0001_initial")]

    operations = [migrations.RunPython(hash_old_tokens, migrations.RunPython.noop)]
