"""The tool of the tracing test's agent (tests/serving/test_tracing.py)."""

from __future__ import annotations


def get_weather(city: str) -> dict[str, object]:
    """Current weather of a city.

    Args:
        city: City name, e.g. "Paris".
    """
    return {"city": city, "temperature_c": 18, "sky": "cloudy"}


TOOLS = [get_weather]
