from django.db import migrations, models

# What `Posting.last_error` started with when our own validation stopped a document.
NOT_SENT = "Not sent to Sage Pro: "


def mark_not_sent(apps, schema_editor):
    Posting = apps.get_model("integrations", "Posting")
    Posting.objects.filter(last_error__startswith=NOT_SENT).update(not_sent=True)


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0005_money_in_range"),
    ]

    operations = [
        migrations.AddField(
            model_name="posting",
            name="not_sent",
            field=models.BooleanField(
                default=False,
                help_text="Our own validation stopped the document: nothing reached Sage Pro, so it is built again from the current rows before it is sent.",
            ),
        ),
        migrations.RunPython(mark_not_sent, migrations.RunPython.noop),
    ]
