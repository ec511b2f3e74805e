from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("integrations", "0022_cards_extra")]

    operations: list = []
