# Issue 14 (unapplied_cash): the unapplied cash rule, refunds of unapplied cash, and the
# finance list (a proxy of Posting).
from decimal import Decimal

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import integrations.models.storage


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0016_refunds"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="UnappliedCash",
            fields=[],
            options={
                "verbose_name": "unapplied cash",
                "verbose_name_plural": "unapplied cash",
                "proxy": True,
                "indexes": [],
                "constraints": [],
            },
            bases=("integrations.posting",),
        ),
        migrations.CreateModel(
            name="UnappliedCashRule",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("enabled", models.BooleanField(default=True)),
                ("amount_mode", models.CharField(choices=[("exact", "Exact amount only (the cash equals the invoice's balance)"), ("up_to_balance", "Up to the invoice's balance")], default="exact", help_text="Exact: only when what waits equals the new invoice's balance. Up to the balance: what waits is applied up to the balance; the rest waits.", max_length=20, verbose_name="amount")),
                ("max_age_days", models.PositiveIntegerField(default=90, help_text="Cash posted longer ago than this is left for a person.", verbose_name="maximum age (days)")),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("sagepro", models.OneToOneField(limit_choices_to={"kind": "sagepro"}, on_delete=django.db.models.deletion.CASCADE, related_name="unapplied_cash_rule", to="integrations.connection", verbose_name="Sage Pro connection")),
            ],
            options={"verbose_name": "unapplied cash rule"},
        ),
        migrations.CreateModel(
            name="UnappliedRefund",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("amount", models.DecimalField(decimal_places=2, max_digits=14)),
                ("currency", models.CharField(default="USD", max_length=3)),
                ("state", models.CharField(choices=[("requested", "Requested (PayTrace is being asked)"), ("refunded", "Refunded"), ("refused", "Refused by PayTrace"), ("unknown", "Unknown (PayTrace did not answer)")], default="requested", max_length=20)),
                ("refund_transaction_id", models.CharField(blank=True, max_length=40)),
                ("error", models.TextField(blank=True)),
                ("requested_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("answered_at", models.DateTimeField(blank=True, null=True)),
                ("item", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="unapplied_refunds", to="integrations.reviewitem")),
                ("receipt", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="unapplied_refunds", to="integrations.posting")),
                ("requested_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
                ("transaction", models.ForeignKey(help_text="The sale whose unapplied cash is refunded.", on_delete=django.db.models.deletion.PROTECT, related_name="unapplied_refunds", to="integrations.paymenttransaction")),
            ],
            options={
                "ordering": ["-requested_at"],
                "constraints": [models.CheckConstraint(condition=models.Q(models.Q(("amount__gte", Decimal("-999999999999.99")), ("amount__lte", Decimal("999999999999.99"))), ("amount__isnull", True), _connector="OR"), name="unappliedrefund_amount_in_range", violation_error_message="amount must be a number from -999999999999.99 to 999999999999.99.")],
            },
            bases=(integrations.models.storage.StorableValuesMixin, models.Model),
        ),
    ]
