"""The WebSocket opening handshake, server side (RFC 6455 section 4.2): pure checks."""

from __future__ import annotations

import base64

import pytest

from relay.handshake import Refusal, accept_value, check, wants_websocket

# RFC 6455 section 1.3's own example.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def upgrade(**changes: str | None) -> dict[str, str]:
    environ = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_UPGRADE": "websocket",
               "HTTP_CONNECTION": "Upgrade", "HTTP_SEC_WEBSOCKET_VERSION": "13", "HTTP_SEC_WEBSOCKET_KEY": RFC_KEY}
    for name, value in changes.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return environ


def test_the_rfc_example_is_accepted_with_its_accept_value() -> None:
    assert accept_value(RFC_KEY) == RFC_ACCEPT
    assert check(upgrade()) == RFC_ACCEPT
    # Header tokens as browsers and proxies send them.
    assert check(upgrade(HTTP_CONNECTION="keep-alive, Upgrade", HTTP_UPGRADE="WebSocket")) == RFC_ACCEPT


@pytest.mark.parametrize("changes,status,reason", [
    ({"REQUEST_METHOD": "POST"}, 405, "not_get"),
    ({"SERVER_PROTOCOL": "HTTP/1.0"}, 400, "http_version"),
    ({"SERVER_PROTOCOL": "HTTP/0.9"}, 400, "http_version"),
    ({"HTTP_CONNECTION": "keep-alive"}, 400, "no_connection_upgrade"),
    ({"HTTP_CONNECTION": None}, 400, "no_connection_upgrade"),
    ({"HTTP_SEC_WEBSOCKET_VERSION": "8"}, 426, "websocket_version"),
    ({"HTTP_SEC_WEBSOCKET_VERSION": "7"}, 426, "websocket_version"),
    ({"HTTP_SEC_WEBSOCKET_VERSION": "99"}, 426, "websocket_version"),
    ({"HTTP_SEC_WEBSOCKET_VERSION": None}, 426, "websocket_version"),
    ({"HTTP_SEC_WEBSOCKET_KEY": None}, 400, "no_key"),
    ({"HTTP_SEC_WEBSOCKET_KEY": "   "}, 400, "no_key"),
    ({"HTTP_SEC_WEBSOCKET_KEY": "!!!not base64!!!"}, 400, "bad_key"),
    ({"HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ"}, 400, "bad_key"),  # padding missing
    ({"HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBs\nZSBub25jZQ=="}, 400, "bad_key"),  # not strict base64
    ({"HTTP_SEC_WEBSOCKET_KEY": base64.b64encode(b"short").decode()}, 400, "bad_key"),
    ({"HTTP_SEC_WEBSOCKET_KEY": base64.b64encode(bytes(17)).decode()}, 400, "bad_key"),
    ({"HTTP_SEC_WEBSOCKET_KEY": "d\xe9lIHNhbXBsZSBub25jZQ=="}, 400, "bad_key"),  # latin-1, not ASCII
])
def test_every_malformed_handshake_is_a_plain_4xx(changes: dict[str, str | None], status: int, reason: str) -> None:
    refusal = check(upgrade(**changes))
    assert isinstance(refusal, Refusal)
    assert (refusal.status, refusal.reason) == (status, reason)
    assert refusal.status_line.startswith(f"{status} ") and refusal.body
    if status == 426:  # RFC 6455 section 4.4: name the version spoken here
        assert ("Sec-WebSocket-Version", "13") in refusal.headers


def test_what_counts_as_asking_for_a_websocket() -> None:
    assert wants_websocket({"HTTP_UPGRADE": "websocket"})
    assert wants_websocket({"HTTP_UPGRADE": "h2c, WebSocket"})
    assert not wants_websocket({"HTTP_UPGRADE": "h2c"}) and not wants_websocket({})
