# Issue 13 (the finance workspace): finding payments, truthful labels.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("integrations", "0012_connection_url_optional_for_agents")]

    operations = [
        # The validation kind is opened for documents our own validation stopped (not
        # sent) as well as for Sage Pro's refusals: its label says what to do.
        migrations.AlterField(
            model_name="reviewitem",
            name="kind",
            field=models.CharField(
                choices=[
                    ("unmatched", "No matching open invoice"),
                    ("validation", "Needs correcting before posting"),
                    ("dead", "Posting gave up after retries"),
                    ("unmapped_status", "Status not in the status map"),
                    ("card_data", "Sender included card data"),
                    ("reversal", "Voided or refunded after its receipt posted"),
                    ("overpayment", "Paid more than the invoice balance"),
                    ("underpayment", "Paid less than the invoice balance"),
                    ("possible_duplicate", "Possibly paid twice"),
                    ("agent_journal", "The Sage Pro agent could not finish a write"),
                ],
                db_index=True,
                max_length=20,
            ),
        ),
        # Search by amount, last four and id, and the date-range filter.
        migrations.AddIndex(
            model_name="paymenttransaction",
            index=models.Index(fields=["amount"], name="transaction_amount"),
        ),
        migrations.AddIndex(
            model_name="paymenttransaction",
            index=models.Index(fields=["card_last4"], name="transaction_card_last4"),
        ),
        migrations.AddIndex(
            model_name="paymenttransaction",
            index=models.Index(fields=["transaction_id"], name="transaction_id_lookup"),
        ),
        migrations.AddIndex(
            model_name="paymenttransaction",
            index=models.Index(fields=["created_at"], name="transaction_created"),
        ),
    ]
