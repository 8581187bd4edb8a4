"""The scrubber every error text and model-call exception passes through."""

from __future__ import annotations

import json
from typing import Any

import pytest

from langgraph_moa import redact
from langgraph_moa.redact import (
    REDACTED,
    register_key_env,
    scrub,
    scrub_exception,
    secret_values,
    written_forms,
)

KEY = "tgp-canary-0123456789abcdef"


@pytest.fixture(autouse=True)
def _canary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-999888777666")
    monkeypatch.setenv("HOME_DIR_NAME", "not-a-secret-value")
    monkeypatch.setattr(redact, "_KEY_ENVS", set())  # registrations end with the test


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


ODD_KEYS = [
    "plainalnum0123456789",
    "k3y!odd#pass%7ee1^x",  # the key: its tail leaked after "Bearer [REDACTED]"
    "quo\"te's-and\\back\\slash",
    "per%cent%25and+plus=eq&amp;",
    "ünïcødé-κλειδί-ключ-鍵-🔑",
    "spaces in the middle ok",
    "<tag>&\"'`$(sh)",
    "\\u00e9-literal-escape",
]


def _lower_hex(text: str) -> str:
    import re

    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def _forms_seen_upstream(key: str) -> list[str]:
    """How an upstream, a proxy or a log might write the key back to us."""
    from urllib.parse import quote, quote_plus

    dumped = json.dumps(key)
    return [
        f"Incorrect API key provided: {key}.",
        f"Authorization: Bearer {key}",
        f"key={key}&next=1",
        f"{key}",  # the whole text
        f"xx{key}yy",  # glued to other text, no label
        json.dumps({"error": {"message": f"bad key {key}"}}),
        json.dumps({"error": {"message": f"bad key {key}"}}, ensure_ascii=False),
        json.dumps({"body": json.dumps({"api_key": key})}),  # JSON in JSON
        f"GET /v1/models?api_key={quote(key, safe='')}",
        f"GET /v1/models?api_key={_lower_hex(quote(key, safe=''))}",
        f"url: https://x/?k={quote_plus(key)}",
        f"repr: {key!r}",
        f"html: <b>{__import__('html').escape(key)}</b>",
        f"dumped: {dumped}",
    ]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_a_registered_key_is_scrubbed_in_every_form_whatever_its_characters(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key sits in a variable whose name does not look secret (``api_key_env:
    UPSTREAM_ODD_VALUE``); once the factory registers it, no form of it, and no tail of
    it, survives."""
    monkeypatch.setenv("UPSTREAM_ODD_VALUE", key)
    before = secret_values()
    assert key not in before  # not by its name...
    register_key_env("UPSTREAM_ODD_VALUE")
    assert key in secret_values()  # ...by being used
    forms = written_forms(key)
    for text in _forms_seen_upstream(key):
        out = scrub(text)
        assert REDACTED in out, text
        for form in forms:
            assert form not in out, (text, out)
        for tail in (key[-6:], key[len(key) // 2 :]):
            if tail not in text.replace(key, ""):
                assert tail not in out, (text, out)


def test_the_model_factory_registers_the_key_variable_it_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from langgraph_moa.graphs.spec import ModelSpec
    from langgraph_moa.models.factory import _api_key

    monkeypatch.setenv("ANOTHER_ODD_PLACE", "v@lue-with-no-secret-name!")
    assert "v@lue-with-no-secret-name!" not in secret_values()
    _api_key(ModelSpec(name="m", model="openai:x", api_key_env="ANOTHER_ODD_PLACE"))
    assert "v@lue-with-no-secret-name!" in secret_values()
    assert scrub("echo: v%40lue-with-no-secret-name%21") == f"echo: {REDACTED}"


def test_an_unknown_key_after_a_label_is_redacted_to_its_end() -> None:
    """A key the process does not hold: the label's pattern takes every character up to the
    next space or quote, not only the usual key alphabet."""
    out = scrub("you sent Authorization: Bearer zz!odd#pass%7ee1^x, try again")
    assert out == f"you sent Authorization: Bearer {REDACTED}, try again"


def test_scrubbing_a_large_text_is_fast() -> None:
    import time

    register_key_env("UPSTREAM_ODD_VALUE")
    text = ("a" * 999 + "%") * 2000
    start = time.perf_counter()
    scrub(text, [*ODD_KEYS, *(f"key-{i:04d}-abcdefgh" for i in range(20))])
    assert time.perf_counter() - start < 2


@pytest.mark.slow
def test_the_cli_prints_and_stores_no_form_of_an_echoed_key(tmp_path, monkeypatch) -> None:
    """The issue's find: ``moa --json`` and the CLI's SQLite thread held the tail of a key
    with unusual characters that an upstream quoted back. Now neither holds any form of it."""
    import subprocess
    import sys

    import yaml

    from langgraph_moa.testing import Behavior, OpenAIServer

    key = 'k3y!odd#pass%7ee1^x"q\\&<>+=/?`'
    with OpenAIServer() as upstream:
        upstream.set_behavior("echo", Behavior(always_status=401, echo_auth=True))

        def model(name: str, **kw: Any) -> dict[str, Any]:
            retry = {"max_attempts": 1, "jitter": False}
            return {
                "name": name,
                "model": f"openai:{name}",
                "base_url": upstream.base_url,
                "retry": retry,
                **kw,
            }

        spec = {
            "layers": [[model("echo", api_key_env="UPSTREAM_ODD_VALUE"), model("a")]],
            "aggregator": model("agg"),
        }
        (tmp_path / "echo.yaml").write_text(yaml.safe_dump(spec))
        db = tmp_path / "threads.sqlite"
        cmd = [sys.executable, "-m", "langgraph_moa.cli", "run", "--spec", "echo.yaml", "--json"]
        cmd += ["--thread", "t1", "--db", str(db), "Is 7 prime?"]
        env = {**__import__("os").environ, "UPSTREAM_ODD_VALUE": key}
        out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=120)
        assert upstream.log("echo") and upstream.log("echo")[0]["has_auth"]
    text = out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")
    assert out.returncode == 0, text
    assert "401" in text and REDACTED in text  # the failure is reported, scrubbed
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("threads.sqlite*"))
    assert stored
    for form in written_forms(key):
        assert form not in text
        assert form.encode() not in stored
    for tail in ("odd#pass", "%7ee1^x"):
        assert tail not in text and tail.encode() not in stored


def test_each_of_several_registered_tokens_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    """`moa serve --api-key-env` takes comma-separated tokens (one per client): each one is a
    secret on its own, not only the whole list."""
    from langgraph_moa.redact import register_key_env, scrub

    monkeypatch.setenv("MOA_CLIENT_TOKENS_LIST", "first-client-tok1,second-client-tok2")
    register_key_env("MOA_CLIENT_TOKENS_LIST")
    out = scrub("got second-client-tok2 and first-client-tok1")
    assert "second-client-tok2" not in out and "first-client-tok1" not in out
