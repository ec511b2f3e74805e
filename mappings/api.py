"""Mapping endpoints under /api/mappings/: suggestions and the feedback they learn from.

POST only. A caller needs a session or token and may add or change field mappings
(integration admins, superusers); a token also needs the `mappings:suggest` scope
(docs/api-tokens.md). The suggester itself is the pure
`mappings.suggest.suggest_mappings`; these views load past feedback from the database
into plain values, call it, and store new verdicts.
"""

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.urls import path
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import exceptions, parsers, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mappings.models import SuggestionFeedback
from mappings.suggest import (
    MAX_SAMPLE_DEPTH,
    Feedback,
    SampleTooLargeError,
    check_sample_size,
    suggest_mappings,
)
from mappings.suggest_targets import TARGETS
from mappings.suggest_words import source_key
from portal.auth import HasScope
from portal.tokens import Scope

app_name = "mappings_api"


def load_feedback(document: str) -> list[Feedback]:
    """Every verdict admins gave on suggestions for this document, as plain values."""
    rows = SuggestionFeedback.objects.filter(document=document).values_list(
        "target_field", "source_key", "accepted"
    )
    return [Feedback(field, key, accepted) for field, key, accepted in rows]


def record_feedback(
    document: str,
    target_field: str,
    source_path: str,
    accepted: bool,
    user: User | AnonymousUser | None,
) -> SuggestionFeedback:
    return SuggestionFeedback.objects.create(
        document=document,
        target_field=target_field,
        source_path=source_path,
        source_key=source_key(source_path)[:80],
        accepted=accepted,
        user=user if user is not None and user.is_authenticated else None,
    )


class BoundedJSONParser(parsers.JSONParser):
    """DRF's JSON parser, answering 400 (not 500) to JSON nested past Python's stack."""

    def parse(
        self,
        stream: object,
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> object:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(
                f"JSON parse error - the body nests too deeply; a sample may nest "
                f"at most {MAX_SAMPLE_DEPTH} levels."
            ) from None


PARSERS = [BoundedJSONParser, parsers.FormParser, parsers.MultiPartParser]


class CanEditFieldMappings(permissions.BasePermission):
    """Signed in, and allowed to add or change field mappings."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(
            user
            and user.is_authenticated
            and (
                user.has_perm("mappings.add_fieldmapping")
                or user.has_perm("mappings.change_fieldmapping")
            )
        )


def _validate_target(value: str) -> str:
    if value not in TARGETS:
        raise serializers.ValidationError(
            f"Unknown target '{value}'; choose one of {', '.join(TARGETS)}."
        )
    return value


class SuggestRequestSerializer(serializers.Serializer):
    target = serializers.CharField(
        help_text=f"The Sage Pro document: {', '.join(TARGETS)}.",
        validators=[_validate_target],
    )
    sample = serializers.JSONField(
        help_text="One source record (a JSON object), e.g. a PayTrace export record."
    )

    def validate_sample(self, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError(
                "The sample must be a JSON object: one source record."
            )
        try:
            check_sample_size(value)
        except SampleTooLargeError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


class AlternativeSerializer(serializers.Serializer):
    source_path = serializers.CharField()
    confidence = serializers.FloatField()


class SuggestionSerializer(serializers.Serializer):
    target_field = serializers.CharField()
    source_path = serializers.CharField(
        allow_null=True, help_text="Dot path into the sample; null when nothing fits."
    )
    confidence = serializers.FloatField(min_value=0, max_value=1)
    reasons = serializers.ListField(child=serializers.CharField())
    alternatives = serializers.ListField(
        child=AlternativeSerializer(), help_text="The next candidates, best first."
    )


class SuggestResponseSerializer(serializers.Serializer):
    suggestions = SuggestionSerializer(many=True)


class FeedbackSerializer(serializers.Serializer):
    target = serializers.CharField(validators=[_validate_target])
    target_field = serializers.CharField(max_length=40)
    source_path = serializers.CharField(max_length=200)
    accepted = serializers.BooleanField()
    source_key = serializers.CharField(read_only=True)
    id = serializers.IntegerField(read_only=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        fields = [f.name for f in TARGETS.get(attrs["target"], ())]
        if attrs["target_field"] not in fields:
            raise serializers.ValidationError(
                {
                    "target_field": f"'{attrs['target_field']}' is not a field of "
                    f"{attrs['target']}; choose one of {', '.join(fields)}."
                }
            )
        return attrs


_V1_EXAMPLE = {
    "transaction_id": 500000123,
    "transaction_type": "SALE",
    "amount": 250.5,
    "invoice_id": "SO-10045",
    "customer_id": "ACME",
    "credit_card": {"masked_number": "************1111"},
    "created": {"through": "API", "at": "3/4/2025 2:07:09 PM"},
}


class SuggestView(APIView):
    permission_classes = [HasScope, CanEditFieldMappings]
    required_scopes = (Scope.MAPPINGS_SUGGEST,)
    parser_classes = PARSERS

    @extend_schema(
        operation_id="mappings_suggest",
        summary="Suggest a source path for each field of a Sage Pro document",
        request=SuggestRequestSerializer,
        responses={200: SuggestResponseSerializer},
        examples=[
            OpenApiExample(
                "PayTrace v1 record",
                value={"target": "cash_receipt", "sample": _V1_EXAMPLE},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        incoming = SuggestRequestSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        target = incoming.validated_data["target"]
        suggestions = suggest_mappings(
            target, incoming.validated_data["sample"], load_feedback(target)
        )
        return Response({"suggestions": [s.as_dict() for s in suggestions]})


class FeedbackView(APIView):
    permission_classes = [HasScope, CanEditFieldMappings]
    required_scopes = (Scope.MAPPINGS_SUGGEST,)
    parser_classes = PARSERS

    @extend_schema(
        operation_id="mappings_feedback",
        summary="Accept or reject a suggested mapping; later suggestions learn from it",
        request=FeedbackSerializer,
        responses={201: FeedbackSerializer},
    )
    def post(self, request: Request) -> Response:
        incoming = FeedbackSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        row = record_feedback(
            data["target"],
            data["target_field"],
            data["source_path"],
            data["accepted"],
            request.user,
        )
        # Answer with what was stored: the storage net masks a card number typed into
        # the path, and the answer must not show it back either.
        stored = type(row).objects.values("source_path", "source_key").get(pk=row.pk)
        body = {**data, **stored, "id": row.pk}
        return Response(FeedbackSerializer(body).data, status=status.HTTP_201_CREATED)


urlpatterns = [
    path("suggest", SuggestView.as_view(), name="suggest"),
    path("feedback", FeedbackView.as_view(), name="feedback"),
]
