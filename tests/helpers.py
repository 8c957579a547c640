"""Assertions shared by several test modules."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, TypeAdapter


def _extra_fields(value: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(value, BaseModel):
        for name in value.model_extra or {}:
            found.append(f"{path}.{name}")
        for name in type(value).model_fields:
            found += _extra_fields(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _extra_fields(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            found += _extra_fields(item, f"{path}.{key}")
    return found


@cache
def _client_events() -> TypeAdapter[Any]:
    from openai.types.realtime import RealtimeClientEvent

    return TypeAdapter(RealtimeClientEvent)  # building it takes seconds: once per run


def assert_ga_client_event(event: dict[str, Any]) -> None:
    """Valid against openai.types.realtime.RealtimeClientEvent, with no unknown field."""
    model = _client_events().validate_python(event)
    assert _extra_fields(model) == [], f"fields the GA API does not define in {event['type']}"
