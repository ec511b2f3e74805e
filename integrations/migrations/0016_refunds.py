# Issue 14 (refunds): filled by its owner with the operations for its own models.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("integrations", "0015_money_movements")]

    operations: list = []
