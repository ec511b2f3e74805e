# Issue 14 (chargebacks): filled by its owner with the operations for its own models.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("integrations", "0017_unapplied_cash")]

    operations: list = []
