"""The finance UI: connections, what came in, what went out, the review queue, the
dead letters, reconciliation, the mapping rules, the configuration history and the
mirrors of Sage Pro.

One module per area, each registering its admins with `@admin.register`; `base`
holds what they share. Transactions, events and deliveries are records of what
happened and are read-only for everyone; reviewers act on postings and review items
through actions that call `integrations.review`.
"""

from django.contrib import admin

from integrations.admin import (  # noqa: F401 - importing registers the admins
    agents,
    autopay,
    bundles,
    cards,
    chargebacks,
    charges,
    connections,
    deadletters,
    events,
    fieldmappings,
    history,
    learning,
    mirror,
    reconciliation,
    recurring,
    refunds,
    review_queue,
    rules,
    storefront,
    transactions,
    unapplied,
)

admin.site.site_header = "Payments portal"
admin.site.site_title = "Payments portal"
admin.site.index_title = "PayTrace payments and Sage Pro receipts"
# The lists are wide (a transaction has ten columns); the breadcrumbs do the navigating.
admin.site.enable_nav_sidebar = False
