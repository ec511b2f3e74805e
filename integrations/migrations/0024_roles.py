"""The five roles as groups (issue 16). Their permissions are given after every
migrate by `integrations.roles.ensure_groups` (a model's permissions exist only once
migrate has created them); docs/roles.md is the matrix."""

from django.db import migrations

ROLES = (
    "Finance reviewer",
    "Finance manager",
    "Integration admin",
    "Auditor",
    "Operator",
)


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("integrations", "0023_config_bundles"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
