# Issue 13 (the finance workspace): month-end runs started from the admin.

import django.core.serializers.json
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("integrations", "0013_workspace_find")]

    operations = [
        migrations.AddField(
            model_name="reconciliationrun",
            name="progress",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name="reconciliationrun",
            name="headline",
            field=models.JSONField(
                blank=True,
                default=dict,
                encoder=django.core.serializers.json.DjangoJSONEncoder,
            ),
        ),
    ]
