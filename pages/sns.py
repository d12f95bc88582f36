"""AWS SNS deliveries (CloudWatch alarms): subscription confirmation and signatures."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from adapters.alert_sources import Delivery
from engine.sources import Source


def is_sns(source: Source, delivery: Delivery) -> bool:
    return False


async def handle(
    request: Request, source: Source, adapter: object, delivery: Delivery
) -> Response | None:
    return None
