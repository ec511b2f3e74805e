# Issue 13 (the finance workspace). Empty until its part of the work needs a change.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("integrations", "0012_connection_url_optional_for_agents")]

    operations: list = []
