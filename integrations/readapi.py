"""The read-only REST API: transactions and review items, plus its OpenAPI schema.

GET only. A caller needs a session or token and the model's `view_` permission, which
both groups in `integrations.roles` have; a token also needs the `payments:read` scope
(docs/api-tokens.md).
"""

from django.db.models import Prefetch, QuerySet
from django.urls import include, path
from django_filters import rest_framework as filters
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import permissions, routers, viewsets
from rest_framework.request import Request
from rest_framework.views import APIView

from integrations.models import PaymentStatus, PaymentTransaction, ReviewItem
from integrations.queries import with_cash_receipt
from integrations.serializers import ReviewItemSerializer, TransactionSerializer
from portal.auth import HasScope
from portal.tokens import Scope

app_name = "api"


class CanViewModel(permissions.BasePermission):
    """Signed in, and holding the `view_` permission of the viewset's model."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        opts = view.queryset.model._meta
        return user.has_perm(f"{opts.app_label}.view_{opts.model_name}")


class TransactionFilter(filters.FilterSet):
    transaction_id = filters.CharFilter(field_name="transaction_id")
    status = filters.ChoiceFilter(
        field_name="mapped_status", choices=PaymentStatus.choices, label="Mapped status"
    )
    invoice = filters.CharFilter(
        field_name="invoice_reference", label="Invoice reference"
    )

    class Meta:
        model = PaymentTransaction
        fields = ["transaction_id", "status", "invoice"]


class ReviewItemFilter(filters.FilterSet):
    kind = filters.ChoiceFilter(choices=ReviewItem.Kind.choices)
    state = filters.ChoiceFilter(choices=ReviewItem.State.choices)
    transaction_id = filters.CharFilter(field_name="transaction__transaction_id")

    class Meta:
        model = ReviewItem
        fields = ["kind", "state", "transaction_id"]


class TransactionViewSet(viewsets.ReadOnlyModelViewSet):
    """PayTrace transactions, newest first, with their Sage Pro cash receipt."""

    queryset = PaymentTransaction.objects.all()
    serializer_class = TransactionSerializer
    permission_classes = [HasScope, CanViewModel]
    required_scopes = (Scope.PAYMENTS_READ,)
    filterset_class = TransactionFilter

    def get_queryset(self) -> QuerySet:
        open_items = ReviewItem.objects.filter(state=ReviewItem.State.OPEN).order_by(
            "kind"
        )
        return (
            with_cash_receipt(PaymentTransaction.objects.select_related("connection"))
            .prefetch_related(
                Prefetch(
                    "review_items", queryset=open_items, to_attr="open_review_items"
                )
            )
            .order_by("-first_seen_at", "-id")
        )


class ReviewItemViewSet(viewsets.ReadOnlyModelViewSet):
    """Payments a person has to look at, oldest first."""

    queryset = ReviewItem.objects.all()
    serializer_class = ReviewItemSerializer
    permission_classes = [HasScope, CanViewModel]
    required_scopes = (Scope.PAYMENTS_READ,)
    filterset_class = ReviewItemFilter

    def get_queryset(self) -> QuerySet:
        return ReviewItem.objects.select_related("transaction").order_by(
            "created_at", "id"
        )


router = routers.DefaultRouter()
router.register("transactions", TransactionViewSet, basename="transaction")
router.register("review-items", ReviewItemViewSet, basename="review-item")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"
    ),
    path("", include(router.urls)),
]
