# Issue 14 (credit memos, reversals, applications): filled by its owner.
import datetime
from decimal import Decimal

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("sandbox_sagepro", "0003_change_feeds_and_latency")]

    operations = [
        migrations.AddField(
            model_name='cashreceipt',
            name='revdate',
            field=models.DateField(default=datetime.date(1, 1, 1)),
        ),
        migrations.AddField(
            model_name='cashreceipt',
            name='reversed',
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name='cashreceipt',
            name='revhash',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
        migrations.AddField(
            model_name='cashreceipt',
            name='revkey',
            field=models.CharField(blank=True, default='', max_length=100),
        ),
        migrations.AddField(
            model_name='cashreceipt',
            name='revreason',
            field=models.CharField(blank=True, default='', max_length=60),
        ),
        migrations.AddField(
            model_name='cashreceiptline',
            name='applyno',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.CreateModel(
            name='CreditMemo',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('company', models.CharField(db_index=True, default='01', max_length=2)),
                ('adduser', models.CharField(blank=True, default='API', max_length=4)),
                ('adddate', models.DateField(default=datetime.date(1, 1, 1))),
                ('addtime', models.CharField(blank=True, default='', max_length=8)),
                ('deleted', models.BooleanField(default=False)),
                ('memono', models.CharField(max_length=10)),
                ('custno', models.CharField(max_length=6)),
                ('memodate', models.DateField(default=datetime.date(1, 1, 1))),
                ('amount', models.DecimalField(decimal_places=2, default=Decimal('0.00'), max_digits=14)),
                ('reference', models.CharField(blank=True, default='', max_length=40)),
                ('rcptno', models.CharField(max_length=10)),
                ('invno', models.CharField(blank=True, default='', max_length=10)),
                ('crinvno', models.CharField(blank=True, default='', max_length=10)),
                ('refacnt', models.CharField(blank=True, default='', max_length=24)),
                ('cashacnt', models.CharField(blank=True, default='', max_length=24)),
                ('feeamt', models.DecimalField(decimal_places=2, default=Decimal('0.00'), max_digits=14)),
                ('feeacnt', models.CharField(blank=True, default='', max_length=24)),
                ('reason', models.CharField(blank=True, default='', max_length=60)),
                ('glbatch', models.CharField(blank=True, default='', max_length=6)),
                ('idemkey', models.CharField(blank=True, default='', max_length=100)),
                ('reqhash', models.CharField(blank=True, default='', max_length=64)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                'verbose_name': 'credit memo',
                'db_table': 'sandbox_sagepro_arcrmemo',
                'ordering': ['company', 'memono'],
                'indexes': [models.Index(fields=['company', 'rcptno'], name='sandbox_sag_company_9598fb_idx')],
                'constraints': [models.UniqueConstraint(fields=('company', 'memono'), name='sagepro_arcrmemo_unique_memono'), models.UniqueConstraint(condition=models.Q(('deleted', False)), fields=('company', 'idemkey'), name='sagepro_arcrmemo_unique_live_key'), models.UniqueConstraint(condition=models.Q(('deleted', False)), fields=('company', 'reference'), name='sagepro_arcrmemo_unique_live_reference')],
            },
        ),
        migrations.CreateModel(
            name='UnappliedApplication',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('company', models.CharField(db_index=True, default='01', max_length=2)),
                ('adduser', models.CharField(blank=True, default='API', max_length=4)),
                ('adddate', models.DateField(default=datetime.date(1, 1, 1))),
                ('addtime', models.CharField(blank=True, default='', max_length=8)),
                ('deleted', models.BooleanField(default=False)),
                ('applyno', models.PositiveIntegerField()),
                ('rcptno', models.CharField(max_length=10)),
                ('custno', models.CharField(max_length=6)),
                ('appdate', models.DateField(default=datetime.date(1, 1, 1))),
                ('applied', models.DecimalField(decimal_places=2, default=Decimal('0.00'), max_digits=14)),
                ('idemkey', models.CharField(blank=True, default='', max_length=100)),
                ('reqhash', models.CharField(blank=True, default='', max_length=64)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                'verbose_name': 'application of unapplied cash',
                'db_table': 'sandbox_sagepro_arcapg',
                'ordering': ['company', 'applyno'],
                'constraints': [models.UniqueConstraint(fields=('company', 'applyno'), name='sagepro_arcapg_unique_applyno'), models.UniqueConstraint(condition=models.Q(('deleted', False)), fields=('company', 'idemkey'), name='sagepro_arcapg_unique_live_key')],
            },
        ),
    ]
