from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("integrations", "0021_cards_and_charges")]

    operations: list = [
        migrations.AddField(
            model_name="charge",
            name="balance_source",
            field=models.CharField(
                blank=True,
                help_text="Where the balance was read: sagepro (fresh) or mirror (Sage "
                "Pro could not be reached).",
                max_length=10,
            ),
        ),
    ]
