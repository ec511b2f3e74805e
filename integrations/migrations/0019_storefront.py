# Issue 14 (storefront): filled by its owner with the operations for its own models.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("integrations", "0018_chargebacks")]

    operations: list = []
