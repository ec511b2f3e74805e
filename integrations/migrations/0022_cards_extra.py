from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("integrations", "0021_cards_and_charges")]

    operations: list = []
