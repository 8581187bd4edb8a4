"""The ``moa`` command: one clear line and a non-zero exit on error, JSON with usage."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from langgraph_moa.testing import Behavior, OpenAIServer


def moa(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "langgraph_moa.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def server():
    with OpenAIServer(default=Behavior(latency=0.05)) as srv:
        yield srv


@pytest.fixture
def spec_file(tmp_path, server):
    model = lambda n: {"name": n, "model": f"openai:{n}", "base_url": server.base_url}  # noqa: E731
    path = tmp_path / "spec.yaml"
    path.write_text(
        yaml.safe_dump({"layers": [[model("a"), model("b")]], "aggregator": model("agg")})
    )
    return str(path)


def test_presets_lists_every_preset():
    out = moa("presets")
    assert out.returncode == 0
    assert [line.split()[0] for line in out.stdout.splitlines()] == [
        "local",
        "moa",
        "moa-gpt4o",
        "moa-lite",
        "self-moa",
    ]


def test_graph_prints_mermaid_without_internal_nodes():
    out = moa("graph", "--preset", "moa-lite")
    assert out.returncode == 0
    assert out.stdout.lstrip("-\n").startswith("config:") or "graph TD;" in out.stdout
    assert "layer_1\\2fqwen1\\2e5-72b-chat" in out.stdout
    assert "__error_handler__" not in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "nope", "Q"], "error: unknown preset 'nope'"),
        (["--spec", "/nonexistent.yaml", "Q"], "error: cannot read spec file"),
        (["--spec", "/dev/zero", "Q"], "error: spec file '/dev/zero' is larger than 1024 KiB"),
        (["--spec", "/bin/sh", "Q"], "error: spec file '/bin/sh' is not UTF-8 text"),
        (["--preset", "moa", "Q"], "error: missing API key environment variable(s):"),
        (["run"], "error: ask a question"),
    ],
)
def test_errors_are_one_clear_line(args, message):
    out = moa(*args, env={"TOGETHER_API_KEY": ""})
    assert out.returncode != 0
    assert out.stderr.startswith(message)
    assert "Traceback" not in out.stderr


def test_json_has_answer_references_usage_and_totals(spec_file):
    out = moa("--spec", spec_file, "--json", "What is MoA?")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["answer"] == "agg says: What is MoA?"
    assert result["references"] == ["a says: What is MoA?", "b says: What is MoA?"]
    assert [c["model"] for c in result["calls"]] == ["a", "b", "agg"]
    assert result["totals"]["calls"] == 3 and result["totals"]["output_tokens"] > 0


def test_an_answer_cut_at_max_tokens_is_said(spec_file):
    cut = moa("--spec", spec_file, "--max-tokens", "2", "Tell me a long story")
    assert cut.returncode == 0 and "answer was cut at max_tokens" in cut.stderr, cut.stderr
    whole = moa("--spec", spec_file, "Tell me a long story")
    assert whole.returncode == 0 and "cut at max_tokens" not in whole.stderr


def test_progress_on_stderr_and_streamed_answer_on_stdout(spec_file):
    out = moa("--spec", spec_file, "--stream", "--show-references", "Why?")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "agg says: Why?"
    for line in ("layer 1: a, b", "layer_1/a [a] done in", "layer 1: 2/2 answers", "reference 1"):
        assert line in out.stderr


@pytest.mark.parametrize(
    ("flags", "streamed"),
    [([], set()), (["--json"], set()), (["--stream"], {"agg"}), (["--stream", "-q"], {"agg"})],
)
def test_only_a_shown_answer_is_streamed(spec_file, server, flags, streamed):
    """The CLI asks for the messages stream only with --stream, and then only the answer
    streams: a run without it makes plain JSON requests (the server's log says)."""
    server.reset()
    out = moa("--spec", spec_file, *flags, "Q?")
    assert out.returncode == 0, out.stderr
    assert {r["model"] for r in server.log() if r["stream"]} == streamed
    assert {r["model"] for r in server.log()} == {"a", "b", "agg"}


def test_thread_continues_a_conversation(spec_file, tmp_path, server):
    db = str(tmp_path / "threads.sqlite")
    assert (
        moa("--spec", spec_file, "--thread", "t1", "--db", db, "-q", "Hi, I am Ada").returncode == 0
    )
    server.reset()
    out = moa("--spec", spec_file, "--thread", "t1", "--db", db, "-q", "Who am I?")
    assert out.returncode == 0, out.stderr
    roles = [m["role"] for m in server.log()[0]["messages"]]
    assert roles == ["user", "assistant", "user"]


@pytest.mark.slow
def test_embedded_default_answers_offline_with_progress():
    """The README's first command: no key, no network, a real local model, under 30 s."""
    import time

    env = {k: "" for k in ("OPENAI_API_KEY", "TOGETHER_API_KEY")}
    start = time.perf_counter()
    out = moa("What is the capital of France?", env=env, timeout=120)
    elapsed = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) >= 3  # a real sentence, not a canned string
    assert "layer 2: 3/3 answers" in out.stderr and "aggregator [aggregator] done" in out.stderr
    assert "[7 calls, 0 failed" in out.stderr
    assert elapsed < 30, elapsed


def test_failed_run_still_prints_what_was_computed(tmp_path):
    with OpenAIServer({"agg": Behavior(always_status=500)}) as srv:
        model = lambda n: {  # noqa: E731
            "name": n,
            "model": f"openai:{n}",
            "base_url": srv.base_url,
            "retry": {"max_attempts": 1},
        }
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump({"layers": [[model("a")]], "aggregator": model("agg")}))
        out = moa("--spec", str(path), "--json", "Q?")
    assert out.returncode == 2
    assert out.stderr.startswith("error: agg: HTTP 500")
    result = json.loads(out.stdout)
    assert result["references"] == ["a says: Q?"] and result["error"].startswith("agg:")
    # the failed answer call is in the records and the totals (what the run paid for)
    assert [(c["model"], c["status"]) for c in result["calls"]] == [("a", "ok"), ("agg", "failed")]
    assert (result["totals"]["calls"], result["totals"]["failed"]) == (2, 1)


def test_review_pause_then_resume_from_the_thread(tmp_path, server):
    model = lambda n: {"name": n, "model": f"openai:{n}", "base_url": server.base_url}  # noqa: E731
    path = tmp_path / "review.yaml"
    path.write_text(
        yaml.safe_dump({"layers": [[model("a")]], "aggregator": model("agg"), "review": True})
    )
    db = str(tmp_path / "threads.sqlite")
    paused = moa("--spec", str(path), "--thread", "r", "--db", db, "-q", "Q?")
    assert paused.returncode == 2
    assert "the run paused; resume it with: moa run --thread r" in paused.stderr
    resumed = moa("run", "--spec", str(path), "--thread", "r", "--db", db, "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming thread r at review" in resumed.stderr
    assert resumed.stdout.strip() == "agg says: Q?"
    again = moa("run", "--spec", str(path), "--thread", "r", "--db", db, "-q")
    assert again.returncode == 2 and "has no unfinished run" in again.stderr


def test_stream_says_when_the_answer_stream_restarts(tmp_path):
    with OpenAIServer({"agg": Behavior(drop_mid_stream_first=1, tokens=6)}) as srv:
        model = lambda n: {  # noqa: E731
            "name": n,
            "model": f"openai:{n}",
            "base_url": srv.base_url,
            "retry": {"jitter": False, "initial_interval": 0.01},
        }
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump({"layers": [[model("a")]], "aggregator": model("agg")}))
        out = moa("--spec", str(path), "--stream", "Q?")
    assert out.returncode == 0, out.stderr
    assert "[answer stream restarted after an error]" in out.stderr
    assert out.stdout.splitlines()[-1] == "agg says: Q? w4 w5 w6"  # the clean, complete answer
