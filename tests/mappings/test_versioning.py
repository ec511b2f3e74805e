"""Configuration history: who changed what, the before/after, and rolling back."""

import json
from datetime import date
from decimal import Decimal

import pytest
import reversion
from django.contrib.auth.models import Permission
from django.forms.models import model_to_dict
from django.urls import reverse
from reversion.models import Version

from integrations.models import Connection
from integrations.roles import FINANCE_REVIEWER, INTEGRATION_ADMIN
from mappings import versioning
from mappings.models import CurrencyRate, GlRule, StatusMap
from tests.factories import make_connection, make_user, make_webhook_secret

pytestmark = pytest.mark.django_db

SECRET = "super-secret-key"


@pytest.fixture
def admin_user():
    return make_user(group=INTEGRATION_ADMIN)


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def gl_admin_client(client):
    """A user who may edit GL rules (the group's GL permissions are not ours to set)."""
    user = make_user()
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="mappings",
            codename__in=["view_glrule", "change_glrule", "add_glrule"],
        )
    )
    client.force_login(user)
    return client


def values(obj):
    """Every stored field of a row (secrets included, to see they don't move)."""
    obj.refresh_from_db()
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def latest_version(obj):
    return Version.objects.get_for_object(obj).order_by("-pk").first()


def detail_url(version):
    return reverse("admin:reversion_version_change", args=[version.pk])


def rollback_url(version):
    return reverse("admin:reversion_version_rollback", args=[version.pk])


def change_status_map(client, status_map, **changes):
    data = {
        name: "" if value is None else value
        for name, value in model_to_dict(status_map).items()
        if name != "id"
    }
    data["is_active"] = "on" if status_map.is_active else ""
    data |= changes
    url = reverse("admin:mappings_statusmap_change", args=[status_map.pk])
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    return response


@pytest.fixture
def status_map():
    connection = make_connection()
    return connection.status_maps.get(priority=10)


# Recording ------------------------------------------------------------------------------


def test_an_admin_edit_creates_a_version_with_the_user(
    admin_client, admin_user, status_map
):
    change_status_map(admin_client, status_map, action=StatusMap.Action.REVIEW)

    version = latest_version(status_map)
    assert version.revision.user == admin_user
    assert version.field_dict["action"] == "review"
    assert version.revision.get_comment() == "Changed Action."


def test_a_row_changed_for_the_first_time_gets_its_earlier_state_recorded(
    admin_client, status_map
):
    old_action = status_map.action

    change_status_map(admin_client, status_map, action=StatusMap.Action.REVIEW)

    baseline, edit = Version.objects.get_for_object(status_map).order_by("pk")
    assert baseline.field_dict["action"] == old_action
    assert baseline.revision.comment == versioning.BASELINE_COMMENT
    assert edit.field_dict["action"] == "review"


def test_the_history_page_shows_before_and_after(admin_client, status_map):
    old_action = status_map.action
    change_status_map(admin_client, status_map, action=StatusMap.Action.REVIEW)
    version = latest_version(status_map)

    response = admin_client.get(detail_url(version))

    assert response.status_code == 200
    changed = [c for c in response.context["changes"] if c.changed]
    assert [(c.name, c.before, c.after) for c in changed] == [
        ("action", old_action, "review")
    ]
    assert "1 field changed" in response.text
    # Rolling back to the newest version would change nothing: no button.
    assert "Roll back to this version" not in response.text
    baseline = versioning.previous_version(version)
    assert "Roll back to this version" in admin_client.get(detail_url(baseline)).text


def test_the_history_list_shows_model_object_when_who_and_comment(
    admin_client, admin_user, status_map
):
    change_status_map(admin_client, status_map, action=StatusMap.Action.REVIEW)
    statusmap_type = latest_version(status_map).content_type_id

    response = admin_client.get(
        reverse("admin:reversion_version_changelist"), {"model": statusmap_type}
    )

    assert response.status_code == 200
    assert '<td class="field-model_label">Status map</td>' in response.text
    assert admin_user.username in response.text
    assert "Changed Action." in response.text


# Rolling back ---------------------------------------------------------------------------


def test_rolling_back_restores_the_exact_earlier_values(gl_admin_client):
    connection = make_connection()
    with reversion.create_revision():
        rule = GlRule.objects.create(
            connection=connection,
            name="Big Amex",
            priority=10,
            card_brands="AMEX",
            amount_min=Decimal("1000.00"),
            currency="USD",
            account="1105-00",
            note="First version.",
        )
    earlier = values(rule)
    first = latest_version(rule)
    with reversion.create_revision():
        rule.account = "1199-00"
        rule.amount_min = None
        rule.amount_max = Decimal("5.00")
        rule.card_brands = ""
        rule.is_active = False
        rule.note = "Second version."
        rule.save()

    response = gl_admin_client.post(rollback_url(first))

    assert response.status_code == 302
    assert values(rule) == earlier
    newest = latest_version(rule)
    assert newest.revision.comment.startswith(f"Rolled back to version {first.pk} by ")
    assert newest.field_dict == first.field_dict


def test_a_deletion_is_recorded_with_the_user_and_rolling_back_recreates_the_row(
    admin_client, admin_user, status_map
):
    earlier = values(status_map)
    delete_url = reverse("admin:mappings_statusmap_delete", args=[status_map.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 302
    assert not StatusMap.objects.filter(pk=status_map.pk).exists()
    last = latest_version(status_map)
    assert versioning.is_deletion(last)
    assert last.revision.user == admin_user
    assert last.field_dict == {**earlier, "id": status_map.pk}
    assert admin_client.get(detail_url(last)).context["current"] is None

    response = admin_client.post(rollback_url(last))

    assert response.status_code == 302
    assert values(StatusMap(pk=status_map.pk)) == earlier


@pytest.mark.django_db(transaction=True)
def test_rolling_back_a_deleted_connection_brings_back_its_rows_not_its_secrets():
    connection = make_connection(password=SECRET)
    with reversion.create_revision():
        GlRule.objects.create(connection=connection, name="Gone earlier", account="1")
    connection.gl_rules.get().delete()
    with reversion.create_revision():
        GlRule.objects.create(connection=connection, name="Web", account="1100-00")
    maps = sorted(sorted(values(m).items()) for m in connection.status_maps.all())
    pk = connection.pk
    connection.delete()
    last = (
        Version.objects.get_for_object_reference(Connection, pk).order_by("-pk").first()
    )

    versioning.roll_back(last, make_user())

    restored = Connection.objects.get(pk=pk)
    assert restored.password == ""
    assert restored.gl_rules.get().name == "Web"
    assert sorted(sorted(values(m).items()) for m in restored.status_maps.all()) == maps


def test_a_reviewer_cannot_roll_back(client, admin_client, status_map):
    earlier_action = status_map.action
    change_status_map(admin_client, status_map, action=StatusMap.Action.REVIEW)
    baseline = Version.objects.get_for_object(status_map).order_by("pk").first()
    client.force_login(make_user(group=FINANCE_REVIEWER))

    assert client.post(rollback_url(baseline)).status_code == 403
    # Reviewers may view connections (issue 13), so they see connection history only.
    listing = client.get(reverse("admin:reversion_version_changelist"))
    assert {v.content_type.model for v in listing.context["cl"].result_list} <= {
        "connection"
    }
    status_map.refresh_from_db()
    assert status_map.action != earlier_action


def test_a_viewer_sees_history_but_no_rollback_button(client, admin_client, status_map):
    change_status_map(admin_client, status_map, action=StatusMap.Action.REVIEW)
    viewer = make_user()
    viewer.user_permissions.add(Permission.objects.get(codename="view_statusmap"))
    client.force_login(viewer)
    version = latest_version(status_map)

    response = client.get(detail_url(version))

    assert response.status_code == 200
    assert "Roll back to this version" not in response.text
    assert client.post(rollback_url(version)).status_code == 403


def test_rollback_refuses_a_row_whose_connection_is_gone(status_map):
    with reversion.create_revision():
        status_map.save()
    version = latest_version(status_map)
    status_map.connection.delete()

    with pytest.raises(versioning.RollbackError, match="Roll that back first"):
        versioning.roll_back(version, make_user())


def test_currency_rates_are_versioned():
    with reversion.create_revision():
        rate = CurrencyRate.objects.create(
            currency="CAD", rate=Decimal("0.73"), valid_on=date(2025, 3, 1)
        )

    assert latest_version(rate).field_dict["rate"] == Decimal("0.73000000")


# Secrets --------------------------------------------------------------------------------


def test_connection_versions_never_contain_the_password(admin_user):
    with reversion.create_revision():
        connection = make_connection(password=SECRET)
    make_webhook_secret(connection, secret="whsec_dGhpcy1tdXN0LW5ldmVyLWxlYWs=")
    with reversion.create_revision():
        connection.name = "Renamed"
        connection.save()

    versions = Version.objects.get_for_object(connection)
    assert versions.count() == 2
    for version in versions:
        fields = json.loads(version.serialized_data)[0]["fields"]
        assert "password" not in fields
        assert SECRET not in version.serialized_data
        assert "fernet:" not in version.serialized_data
    assert not versioning.reversion.is_registered(connection.webhook_secrets.model)


def test_rolling_back_a_connection_keeps_its_password(admin_client):
    with reversion.create_revision():
        connection = make_connection(password=SECRET, name="First")
    first = latest_version(connection)
    with reversion.create_revision():
        connection.name = "Second"
        connection.password = "rotated-key"
        connection.save()

    admin_client.post(rollback_url(first))

    connection.refresh_from_db()
    assert connection.name == "First"
    assert connection.password == "rotated-key"


# Equal amounts written two ways ----------------------------------------------------------


def test_an_amount_saved_again_as_typed_is_not_shown_as_a_change(
    admin_client, admin_user
):
    """The reported "1000.00 → 1000": the same amount typed without its cents."""
    connection = make_connection()
    with reversion.create_revision():
        rule = GlRule.objects.create(
            connection=connection,
            name="Large",
            amount_min=Decimal("1000.00"),
            account="2100-00",
        )
    with reversion.create_revision():
        rule.amount_min = Decimal("1000")
        rule.note = "Renamed nothing; added a note."
        rule.save()
    first, second = Version.objects.get_for_object(rule).order_by("pk")

    changes = versioning.diff_versions(first, second)

    changed = {c.name: (c.before, c.after) for c in changes if c.changed}
    assert changed == {"note": ("(blank)", "Renamed nothing; added a note.")}
    page = admin_client.get(detail_url(second)).content.decode()
    assert "1 field changed" in page
    assert "1000.00 → 1000" not in page
    assert ">Amount min<" not in page  # unchanged fields are not listed
