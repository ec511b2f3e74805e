"""Overrides wait for a finance manager's second signature (issue 16): the request,
its state and the permission to sign (`integrations.sign_overriderequest`, given to the
Finance manager role by `integrations.roles.ensure_groups` after migrate)."""

import django.core.serializers.json
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('integrations', '0024_roles'),
        ('mappings', '0006_money_movements'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='OverrideRequest',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('state', models.CharField(choices=[('waiting', 'Awaiting a second signature'), ('signed', 'Signed and applied'), ('refused', 'Refused'), ('outdated', 'Outdated (the receipt changed)')], db_index=True, default='waiting', max_length=20)),
                ('changes', models.JSONField(blank=True, default=dict, encoder=django.core.serializers.json.DjangoJSONEncoder, help_text='The fields the reviewer changed, with their new values.')),
                ('overrides', models.JSONField(blank=True, default=dict, encoder=django.core.serializers.json.DjangoJSONEncoder, help_text="The posting's overrides once signed (the kept ones and the change).")),
                ('preview', models.JSONField(blank=True, default=dict, encoder=django.core.serializers.json.DjangoJSONEncoder, help_text='What the requester was shown would happen.')),
                ('document', models.JSONField(blank=True, default=list, encoder=django.core.serializers.json.DjangoJSONEncoder, help_text="The receipt's fields with the change, as [field, value] pairs.")),
                ('posting_fingerprint', models.CharField(max_length=64)),
                ('requested_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('decided_at', models.DateTimeField(blank=True, null=True)),
                ('reason', models.TextField(blank=True, help_text='Why it was refused, or why it went out of date.')),
            ],
            options={
                'ordering': ['-requested_at', '-id'],
                'permissions': [('sign_overriderequest', "Can sign or refuse a reviewer's override (second signature)")],
            },
        ),
        migrations.AddField(
            model_name='overriderequest',
            name='decided_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='overriderequest',
            name='item',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='override_requests', to='integrations.reviewitem'),
        ),
        migrations.AddField(
            model_name='overriderequest',
            name='posting',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='override_requests', to='integrations.posting'),
        ),
        migrations.AddField(
            model_name='overriderequest',
            name='requested_by',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddConstraint(
            model_name='overriderequest',
            constraint=models.UniqueConstraint(condition=models.Q(('state', 'waiting')), fields=('item',), name='one_waiting_override_per_item'),
        ),
    ]
