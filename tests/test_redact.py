"""The scrubber every error text and model-call exception passes through."""

from __future__ import annotations

import pytest

from langgraph_moa.redact import REDACTED, scrub, scrub_exception, secret_values

KEY = "tgp-canary-0123456789abcdef"


@pytest.fixture(autouse=True)
def _canary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-999888777666")
    monkeypatch.setenv("HOME_DIR_NAME", "not-a-secret-value")


def test_secret_values_are_the_key_like_variables() -> None:
    values = secret_values()
    assert KEY in values and "tok-999888777666" in values
    assert "not-a-secret-value" not in values


@pytest.mark.parametrize(
    "text",
    [
        f"Incorrect API key provided: {KEY}",
        f"you sent Authorization: Bearer {KEY}",
        "Authorization: Bearer abcdefghijklmnop",
        'headers: {"x-api-key": "zzzzyyyyxxxx1111"}',
        "api_key=qwertyuiop12345",
        "key sk-proj-AbCdEf0123456789AbCdEf in the body",
        "token tok-999888777666 expired",
    ],
)
def test_credentials_are_redacted(text: str) -> None:
    out = scrub(text)
    assert REDACTED in out
    for secret in (
        KEY,
        "abcdefghijklmnop",
        "zzzzyyyyxxxx1111",
        "qwertyuiop12345",
        "sk-proj-AbCdEf0123456789AbCdEf",
        "tok-999888777666",
    ):
        assert secret not in out


def test_ordinary_text_is_left_alone() -> None:
    text = "HTTP 429: Rate limit reached for requests. The answer is 42; see skeleton-keys."
    assert scrub(text) == text


def test_an_exception_chain_is_scrubbed_in_place_and_keeps_what_retries_need() -> None:
    class Response:
        status_code = 401
        headers = {"Retry-After": "2", "Set-Cookie": "session=1"}
        request = {"Authorization": f"Bearer {KEY}"}

    class SDKError(Exception):
        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.message = message
            self.body = {"error": {"message": message}}
            self.response = Response()
            self.request = Response.request

    try:
        try:
            raise SDKError(f"invalid key {KEY}")
        except SDKError as inner:
            raise RuntimeError(f"wrapped: {inner}") from inner
    except RuntimeError as exc:
        outer = scrub_exception(exc)
    inner = outer.__cause__
    assert KEY not in str(outer) and isinstance(inner, SDKError)
    assert KEY not in inner.message and KEY not in str(inner.body) and KEY not in str(inner)
    assert inner.request is None
    assert inner.response.status_code == 401
    assert inner.response.headers == {"retry-after": "2"}
