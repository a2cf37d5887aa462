"""Tracing's switch and its off path (the traces themselves: tests/e2e/test_tracing.py)."""

from __future__ import annotations

import pytest

from app import tracing
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("overrides", "enabled"),
    [
        ({}, False),
        ({"otel_exporter_otlp_endpoint": "http://collector:4318"}, True),
        ({"otel_exporter_otlp_traces_endpoint": "http://collector:4318/v1/traces"}, True),
        (
            {"otel_exporter_otlp_endpoint": "http://collector:4318", "otel_sdk_disabled": True},
            False,
        ),
    ],
)
def test_tracing_is_on_only_with_an_endpoint_and_the_sdk_enabled(overrides, enabled) -> None:
    assert make_settings("sqlite://", **overrides).tracing_enabled is enabled


def test_with_tracing_off_every_helper_is_a_no_op() -> None:
    assert not tracing.start_tracing(make_settings("sqlite://"))
    assert not tracing.tracing_on()

    async def asgi_app(scope, receive, send) -> None:
        return None

    assert tracing.traced_http(asgi_app) is asgi_app
    assert tracing.current_trace_id() is None
    with tracing.frame_span("chat", '{"traceparent": "00-ab-cd-01"}') as span:
        assert span is None
    with tracing.publish_span("room/lobby") as traceparent:
        assert traceparent is None
    envelope = {"trace": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with tracing.delivery_span(envelope, "room/lobby", "1") as delivery:
        assert delivery is None


@pytest.mark.parametrize(
    ("frame", "traceparent"),
    [
        ('{"event": "ping", "traceparent": "00-ab-cd-01"}', "00-ab-cd-01"),
        ('{"event": "ping"}', None),
        ('{"traceparent": 5}', None),
        ('"traceparent"', None),
        ("traceparent{", None),
    ],
)
def test_a_frame_traceparent_is_read_only_from_a_json_object(frame, traceparent) -> None:
    assert tracing.frame_traceparent(frame) == traceparent
