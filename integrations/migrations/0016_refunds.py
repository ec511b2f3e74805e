# Issue 14 (refunds): the refunds' own models, and the status map's "reverse" action
# for the default rows that used to record voids and refunds only.

import django.db.models.deletion
import django.utils.timezone
from decimal import Decimal

from django.conf import settings
from django.db import migrations, models

import integrations.models.storage

# (priority, event_type, transaction_type, status_code_pattern, status_message_pattern,
# gateway_status, payment_status): the default rows that now reverse.
REVERSED_DEFAULTS = [
    (5, "", "REFUND", "", "", "refunded", "Refunded"),
    (20, "transaction.voided", "", "", "", "voided", "Voided"),
    (80, "", "", "N", "*VOID*", "voided", "Voided"),
]


def _default_rows(apps, action):  # noqa: ANN001, ANN202
    StatusMap = apps.get_model("mappings", "StatusMap")
    for priority, event, kind, code, message, gateway, payment in REVERSED_DEFAULTS:
        yield StatusMap.objects.filter(
            priority=priority,
            event_type=event,
            transaction_type=kind,
            status_code_pattern=code,
            status_message_pattern=message,
            response_code__isnull=True,
            gateway_status=gateway,
            payment_status=payment,
            action=action,
        )


def reverse_by_default(apps, schema_editor):  # noqa: ANN001, ANN201
    for rows in _default_rows(apps, "record_only"):
        rows.update(action="reverse")


def record_only_again(apps, schema_editor):  # noqa: ANN001, ANN201
    for rows in _default_rows(apps, "reverse"):
        rows.update(action="record_only")


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0015_money_movements"),
        ("mappings", "0006_money_movements"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='PendingReversal',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('original_transaction_id', models.CharField(blank=True, help_text="The sale, when the refund's event named it.", max_length=40)),
                ('state', models.CharField(choices=[('waiting', 'Waiting'), ('done', 'Decided'), ('review', 'Sent to review')], db_index=True, default='waiting', max_length=10)),
                ('reason', models.CharField(blank=True, max_length=300)),
                ('waiting_since', models.DateTimeField(default=django.utils.timezone.now)),
                ('decided_at', models.DateTimeField(blank=True, null=True)),
                ('transaction', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='pending_reversal', to='integrations.paymenttransaction')),
            ],
            options={
                'ordering': ['waiting_since'],
            },
        ),
        migrations.CreateModel(
            name='ExpectedRefund',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('refund_transaction_id', models.CharField(max_length=40)),
                ('amount', models.DecimalField(decimal_places=2, max_digits=14)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('connection', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='expected_refunds', to='integrations.connection')),
                ('original', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='expected_refunds', to='integrations.paymenttransaction')),
                ('requested_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('connection', 'refund_transaction_id'), name='expected_refund_unique_per_connection'), models.CheckConstraint(condition=models.Q(models.Q(('amount__gte', Decimal('-999999999999.99')), ('amount__lte', Decimal('999999999999.99'))), ('amount__isnull', True), _connector='OR'), name='expectedrefund_amount_in_range', violation_error_message='amount must be a number from -999999999999.99 to 999999999999.99.')],
            },
            bases=(integrations.models.storage.StorableValuesMixin, models.Model),
        ),
        migrations.CreateModel(
            name='RefundFee',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('amount', models.DecimalField(decimal_places=2, default=Decimal('0.00'), max_digits=14)),
                ('is_active', models.BooleanField(default=True)),
                ('connection', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='refund_fee', to='integrations.connection')),
            ],
            options={
                'constraints': [models.CheckConstraint(condition=models.Q(models.Q(('amount__gte', Decimal('-999999999999.99')), ('amount__lte', Decimal('999999999999.99'))), ('amount__isnull', True), _connector='OR'), name='refundfee_amount_in_range', violation_error_message='amount must be a number from -999999999999.99 to 999999999999.99.')],
            },
            bases=(integrations.models.storage.StorableValuesMixin, models.Model),
        ),
        migrations.RunPython(reverse_by_default, record_only_again),
    ]
