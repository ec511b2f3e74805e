# Issue 14 (credit memos, reversals, applications): filled by its owner.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sandbox_sagepro", "0003_change_feeds_and_latency")]

    operations: list = []
