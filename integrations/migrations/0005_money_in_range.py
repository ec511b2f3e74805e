"""Money columns stay finite and within their digits (issue 8), also on SQLite.

SQLite does not enforce numeric(14, 2): a signed event with `"tax_amount": "1e20"` was
stored as 1e+20, and every query loading that row then raised InvalidOperation. Before
the constraints are added, rows already holding such a value are repaired: the amount
is set to 0.00 (NULL where the column allows it), the payment's history says so, its
unsent receipt waits for a person, and a `dead` review item names the field. The value
itself is not copied anywhere: an "amount" may be a card number, and the sender's
record is still on the event.
"""

from decimal import Decimal

from django.db import migrations, models
from django.utils import timezone

# (model, field, max_digits, decimal_places, nullable)
MONEY_FIELDS = [
    ("paymenttransaction", "amount", 14, 2, False),
    ("paymenttransaction", "tax_amount", 14, 2, True),
    ("posting", "unapplied_amount", 14, 2, True),
    ("posting", "exchange_rate", 18, 8, True),
    ("reconciliationline", "amount", 14, 2, False),
    ("settlementbatch", "net_amount", 14, 2, False),
    ("settlementbatch", "sales_amount", 14, 2, False),
    ("settlementbatch", "refund_amount", 14, 2, False),
]


def limit(max_digits, decimal_places):
    return Decimal(10) ** (max_digits - decimal_places) - Decimal("0.01")


def out_of_range_ids(schema_editor, table, column, bound):
    """Ids of rows whose value is not a number within ±bound (NaN, inf, text, 1e20)."""
    quote = schema_editor.quote_name
    sql = (
        f"SELECT {quote('id')} FROM {quote(table)} WHERE {quote(column)} IS NOT NULL "
        f"AND NOT ({quote(column)} >= %s AND {quote(column)} <= %s)"
    )
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(sql, [-bound, bound])
        return [row[0] for row in cursor.fetchall()]


def repair_out_of_range_amounts(apps, schema_editor):
    repaired_transactions = {}
    for model_name, field, max_digits, places, nullable in MONEY_FIELDS:
        model = apps.get_model("integrations", model_name)
        bound = limit(max_digits, places)
        ids = out_of_range_ids(schema_editor, model._meta.db_table, field, bound)
        if not ids:
            continue
        # Write without reading the bad value back (reading it is what fails).
        model.objects.filter(pk__in=ids).update(
            **{field: None if nullable else Decimal("0")}
        )
        if model_name == "paymenttransaction":
            for pk in ids:
                repaired_transactions.setdefault(pk, []).append(field)
        elif model_name == "posting":
            for posting in model.objects.filter(pk__in=ids).only("transaction_id"):
                repaired_transactions.setdefault(posting.transaction_id, []).append(
                    f"posting {posting.pk} {field}"
                )
    if repaired_transactions:
        _record_repairs(apps, repaired_transactions)
        if schema_editor.connection.vendor == "postgresql":
            # Run the deferred foreign-key checks of the rows written above now:
            # PostgreSQL refuses ALTER TABLE while they are pending.
            schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            schema_editor.execute("SET CONSTRAINTS ALL DEFERRED")


def _record_repairs(apps, repaired):
    history = apps.get_model("integrations", "TransactionHistory")
    review_item = apps.get_model("integrations", "ReviewItem")
    posting = apps.get_model("integrations", "Posting")
    now = timezone.now()
    for txn_id, fields in repaired.items():
        names = ", ".join(fields)
        reason = (
            f"Stored {names} held a value outside its column (not a finite number, "
            "or more digits than the column has); migration 0005 set it to 0.00 or "
            "empty. Check the payment at PayTrace, then dismiss this item or correct "
            "the record; nothing is posted until then."
        )
        history.objects.create(
            transaction_id=txn_id,
            at=now,
            action="amount_repaired",
            detail=reason,
            changes={"fields": fields},
        )
        posting.objects.filter(
            transaction_id=txn_id, state__in=["pending", "failed", "in_progress"]
        ).update(
            state="needs_review",
            next_attempt_at=None,
            last_error=f"Not sent: {names} was out of range (repaired by migration 0005).",
        )
        if not review_item.objects.filter(
            transaction_id=txn_id, kind="dead", state="open"
        ).exists():
            review_item.objects.create(
                transaction_id=txn_id,
                kind="dead",
                state="open",
                reason=reason,
                error_code="invalid_amount",
                created_at=now,
            )


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0004_dead_letter_queue"),
        ("mappings", "0004_matching_allow_partial"),
    ]

    operations = [
        migrations.RunPython(
            repair_out_of_range_amounts, migrations.RunPython.noop, elidable=False
        ),
        migrations.AddConstraint(
            model_name="paymenttransaction",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("amount__gte", Decimal("-999999999999.99")),
                        ("amount__lte", Decimal("999999999999.99")),
                    ),
                    ("amount__isnull", True),
                    _connector="OR",
                ),
                name="paymenttransaction_amount_in_range",
                violation_error_message="amount must be a number from -999999999999.99 to 999999999999.99.",
            ),
        ),
        migrations.AddConstraint(
            model_name="paymenttransaction",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("tax_amount__gte", Decimal("-999999999999.99")),
                        ("tax_amount__lte", Decimal("999999999999.99")),
                    ),
                    ("tax_amount__isnull", True),
                    _connector="OR",
                ),
                name="paymenttransaction_tax_amount_in_range",
                violation_error_message="tax_amount must be a number from -999999999999.99 to 999999999999.99.",
            ),
        ),
        migrations.AddConstraint(
            model_name="posting",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("unapplied_amount__gte", Decimal("-999999999999.99")),
                        ("unapplied_amount__lte", Decimal("999999999999.99")),
                    ),
                    ("unapplied_amount__isnull", True),
                    _connector="OR",
                ),
                name="posting_unapplied_amount_in_range",
                violation_error_message="unapplied_amount must be a number from -999999999999.99 to 999999999999.99.",
            ),
        ),
        migrations.AddConstraint(
            model_name="posting",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("exchange_rate__gte", Decimal("-9999999999.99")),
                        ("exchange_rate__lte", Decimal("9999999999.99")),
                    ),
                    ("exchange_rate__isnull", True),
                    _connector="OR",
                ),
                name="posting_exchange_rate_in_range",
                violation_error_message="exchange_rate must be a number from -9999999999.99 to 9999999999.99.",
            ),
        ),
        migrations.AddConstraint(
            model_name="reconciliationline",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("amount__gte", Decimal("-999999999999.99")),
                        ("amount__lte", Decimal("999999999999.99")),
                    ),
                    ("amount__isnull", True),
                    _connector="OR",
                ),
                name="reconciliationline_amount_in_range",
                violation_error_message="amount must be a number from -999999999999.99 to 999999999999.99.",
            ),
        ),
        migrations.AddConstraint(
            model_name="settlementbatch",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("net_amount__gte", Decimal("-999999999999.99")),
                        ("net_amount__lte", Decimal("999999999999.99")),
                    ),
                    ("net_amount__isnull", True),
                    _connector="OR",
                ),
                name="settlementbatch_net_amount_in_range",
                violation_error_message="net_amount must be a number from -999999999999.99 to 999999999999.99.",
            ),
        ),
        migrations.AddConstraint(
            model_name="settlementbatch",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("sales_amount__gte", Decimal("-999999999999.99")),
                        ("sales_amount__lte", Decimal("999999999999.99")),
                    ),
                    ("sales_amount__isnull", True),
                    _connector="OR",
                ),
                name="settlementbatch_sales_amount_in_range",
                violation_error_message="sales_amount must be a number from -999999999999.99 to 999999999999.99.",
            ),
        ),
        migrations.AddConstraint(
            model_name="settlementbatch",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("refund_amount__gte", Decimal("-999999999999.99")),
                        ("refund_amount__lte", Decimal("999999999999.99")),
                    ),
                    ("refund_amount__isnull", True),
                    _connector="OR",
                ),
                name="settlementbatch_refund_amount_in_range",
                violation_error_message="refund_amount must be a number from -999999999999.99 to 999999999999.99.",
            ),
        ),
    ]
