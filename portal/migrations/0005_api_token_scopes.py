"""API tokens get scopes, an expiry, revocation and rotation (issue 16).

Tokens that exist already keep working: before scopes, a key could do whatever its
user's permissions allowed, so each gets every scope (the user's permissions still
cap it, exactly as before). Working out narrower scopes from permissions here would
run before `integrations.roles.ensure_groups` gives the roles their permissions (after
migrate), and could cut off a caller that worked yesterday. Each gets the default
lifetime (API_TOKEN_LIFETIME_DAYS, 90 days) counted from this migration, not from when
it was made: an old token must not stop at the moment of the upgrade, and its owner
has a whole lifetime to rotate it into a narrower one.
"""

from datetime import timedelta

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

import portal.tokens

# Frozen here: later scopes must not be granted to old tokens by re-running this.
SCOPES = ["payments:read", "charges:create", "mappings:suggest"]


def give_existing_tokens_scopes_and_expiry(apps, schema_editor):
    ApiToken = apps.get_model("portal", "ApiToken")
    days = getattr(settings, "API_TOKEN_LIFETIME_DAYS", 90)
    ApiToken.objects.update(
        scopes=SCOPES, expires_at=timezone.now() + timedelta(days=days)
    )


class Migration(migrations.Migration):
    dependencies = [("portal", "0004_audit_sign_in_security")]

    operations = [
        migrations.AlterModelOptions(
            name="apitoken",
            options={
                "permissions": [
                    (
                        "manage_all_apitoken",
                        "Can see and manage every user's API tokens",
                    )
                ],
                "verbose_name": "API token",
            },
        ),
        migrations.AddField(
            model_name="apitoken",
            name="scopes",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="What the key may do (portal.tokens.Scope values); its "
                "user's permissions still apply.",
            ),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(null=True, editable=False),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="revoked_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="rotated_at",
            field=models.DateTimeField(
                blank=True,
                editable=False,
                help_text="When a new key replaced this one (the old key works until "
                "expires_at).",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="rotated_from",
            field=models.OneToOneField(
                blank=True,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="successor",
                to="portal.apitoken",
            ),
        ),
        migrations.RunPython(
            give_existing_tokens_scopes_and_expiry, migrations.RunPython.noop
        ),
        migrations.AlterField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(
                default=portal.tokens.default_expiry,
                editable=False,
                help_text="The key is refused from this moment on.",
            ),
        ),
    ]
