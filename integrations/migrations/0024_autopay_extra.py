from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("integrations", "0023_charging_extra")]

    operations: list = []
