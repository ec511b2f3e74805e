# Issue 14 (chargebacks): the chargeback records, their events, the dispute-report
# mapping and imports.
from decimal import Decimal

import django.core.serializers.json
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import integrations.models.storage


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0017_unapplied_cash"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='DisputeImport',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('file_name', models.CharField(max_length=200)),
                ('sha256', models.CharField(db_index=True, max_length=64)),
                ('state', models.CharField(choices=[('previewed', 'Previewed (nothing imported)'), ('imported', 'Imported'), ('refused', 'Refused (file unreadable)')], default='previewed', max_length=10)),
                ('row_count', models.PositiveIntegerField(default=0)),
                ('good_count', models.PositiveIntegerField(default=0)),
                ('bad_count', models.PositiveIntegerField(default=0)),
                ('created_count', models.PositiveIntegerField(default=0)),
                ('changed_count', models.PositiveIntegerField(default=0)),
                ('unchanged_count', models.PositiveIntegerField(default=0)),
                ('error', models.TextField(blank=True, help_text='Why the file could not be read.')),
                ('notes', models.JSONField(blank=True, default=list)),
                ('rows', models.JSONField(blank=True, default=list, encoder=django.core.serializers.json.DjangoJSONEncoder, help_text="The file's rows (card numbers masked): line and cells.")),
                ('results', models.JSONField(blank=True, default=list, encoder=django.core.serializers.json.DjangoJSONEncoder, help_text="Each row's outcome: line, case, errors or what was done.")),
                ('mapping', models.JSONField(blank=True, default=dict)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('imported_at', models.DateTimeField(blank=True, null=True)),
                ('connection', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='dispute_imports', to='integrations.connection')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at'],
            },
            bases=(integrations.models.storage.StorableValuesMixin, models.Model),
        ),
        migrations.CreateModel(
            name='Chargeback',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('case_number', models.CharField(max_length=40)),
                ('amount', models.DecimalField(decimal_places=2, max_digits=14)),
                ('currency', models.CharField(default='USD', max_length=3)),
                ('fee_amount', models.DecimalField(decimal_places=2, default=0, help_text="The processor's dispute fee, booked when the case opens.", max_digits=14)),
                ('reason_code', models.CharField(blank=True, max_length=20)),
                ('reason_text', models.CharField(blank=True, max_length=200)),
                ('state', models.CharField(choices=[('opened', 'Opened'), ('won', 'Won'), ('lost', 'Lost')], default='opened', max_length=10)),
                ('opened_on', models.DateField()),
                ('due_on', models.DateField(blank=True, help_text='Respond by.', null=True)),
                ('resolved_on', models.DateField(blank=True, null=True)),
                ('source', models.CharField(choices=[('form', 'Admin form'), ('import', 'Dispute report import')], default='form', max_length=10)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('connection', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='chargebacks', to='integrations.connection')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('transaction', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='chargebacks', to='integrations.paymenttransaction')),
                ('dispute_import', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='chargebacks', to='integrations.disputeimport')),
            ],
            options={
                'ordering': ['-opened_on', '-id'],
            },
            bases=(integrations.models.storage.StorableValuesMixin, models.Model),
        ),
        migrations.CreateModel(
            name='DisputeReportMapping',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('columns', models.JSONField(blank=True, default=dict, help_text='Field name → the column header.')),
                ('date_format', models.CharField(default='%Y-%m-%d', max_length=20)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('connection', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='dispute_mapping', to='integrations.connection')),
                ('updated_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.CreateModel(
            name='ChargebackEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('state', models.CharField(choices=[('opened', 'Opened'), ('won', 'Won'), ('lost', 'Lost')], max_length=10)),
                ('on', models.DateField(help_text='The date the state took effect (the batch date).')),
                ('amount', models.DecimalField(decimal_places=2, max_digits=14)),
                ('source', models.CharField(choices=[('form', 'Admin form'), ('import', 'Dispute report import')], default='form', max_length=10)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('chargeback', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='events', to='integrations.chargeback')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('posting', models.ForeignKey(blank=True, help_text='The GL batch this state change posts.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='chargeback_events', to='integrations.posting')),
            ],
            options={
                'ordering': ['on', 'id'],
                'constraints': [models.UniqueConstraint(fields=('chargeback', 'state'), name='one_chargeback_event_per_state'), models.CheckConstraint(condition=models.Q(models.Q(('amount__gte', Decimal('-999999999999.99')), ('amount__lte', Decimal('999999999999.99'))), ('amount__isnull', True), _connector='OR'), name='chargebackevent_amount_in_range', violation_error_message='amount must be a number from -999999999999.99 to 999999999999.99.')],
            },
            bases=(integrations.models.storage.StorableValuesMixin, models.Model),
        ),
        migrations.AddConstraint(
            model_name='disputeimport',
            constraint=models.UniqueConstraint(condition=models.Q(('state', 'imported')), fields=('connection', 'sha256'), name='dispute_file_imported_once'),
        ),
        migrations.AddConstraint(
            model_name='chargeback',
            constraint=models.UniqueConstraint(fields=('connection', 'case_number'), name='chargeback_case_unique_per_connection'),
        ),
        migrations.AddConstraint(
            model_name='chargeback',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('amount__gte', Decimal('-999999999999.99')), ('amount__lte', Decimal('999999999999.99'))), ('amount__isnull', True), _connector='OR'), name='chargeback_amount_in_range', violation_error_message='amount must be a number from -999999999999.99 to 999999999999.99.'),
        ),
        migrations.AddConstraint(
            model_name='chargeback',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('fee_amount__gte', Decimal('-999999999999.99')), ('fee_amount__lte', Decimal('999999999999.99'))), ('fee_amount__isnull', True), _connector='OR'), name='chargeback_fee_amount_in_range', violation_error_message='fee_amount must be a number from -999999999999.99 to 999999999999.99.'),
        ),
    ]
