# Issue 14 (unapplied_cash): filled by its owner with the operations for its own models.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("integrations", "0016_refunds")]

    operations: list = []
