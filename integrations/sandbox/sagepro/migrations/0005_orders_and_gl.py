# Issue 14 (GL batches, customers, sales orders, items, locations): filled by its owner.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sandbox_sagepro", "0004_credit_documents")]

    operations: list = []
