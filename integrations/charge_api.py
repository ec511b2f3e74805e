"""`POST /api/payments/charge` (issue 15). Being written."""

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class ChargeView(APIView):
    def post(self, request: Request) -> Response:
        return Response({"detail": "not yet"}, status=501)
