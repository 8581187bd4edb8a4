"""``moa eval`` end to end against the project's OpenAI-compatible test server: the MoA
proposers and aggregator and the judge are models on that server (the judge answers a fixed
text), so every number here is about the pipeline, never about quality."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from langgraph_moa.cli import main
from langgraph_moa.eval.store import read_all, read_results
from langgraph_moa.eval.summary import summarize
from langgraph_moa.testing import Behavior, OpenAIServer

FAST = {"jitter": False, "initial_interval": 0.02, "max_attempts": 2}


@pytest.fixture
def srv() -> Iterator[OpenAIServer]:
    """The test server in its own thread (the CLI runs its own event loop)."""
    with OpenAIServer() as server:
        yield server


def _model(srv: OpenAIServer, name: str, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "model": f"openai:{name}",
        "base_url": srv.base_url,
        "timeout": 5,
        "retry": FAST,
        "price": {"input": 1.0, "output": 2.0},
        **kw,
    }


def _spec(
    tmp: Path, srv: OpenAIServer, name: str = "tiny", file: str | None = None, **agg: Any
) -> str:
    spec = {
        "name": name,
        "layers": [[_model(srv, "p1"), _model(srv, "p2")]],
        "aggregator": _model(srv, "agg", **agg),
    }
    path = tmp / (file or f"{name}.yaml")
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _judge(srv: OpenAIServer, name: str = "judge") -> list[str]:
    return ["--judge", f"openai:{name}", "--judge-base-url", srv.base_url]


def test_mt_bench_end_to_end_resume_and_refusal(tmp_path, srv, capsys) -> None:
    srv.set_behavior("judge", Behavior(content="Good answer. Rating: [[7]]"))
    srv.set_behavior("agg", Behavior(content="Final answer."))
    out = tmp_path / "mt.jsonl"
    args = [
        "eval",
        "mt-bench",
        "--spec",
        _spec(tmp_path, srv),
        *_judge(srv),
        "-q",
        "--question-ids",
        "81",
        "101",
        "--output",
        str(out),
        "--export",
        "fastchat",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "score (1-10)          7.00" in printed and "unparsable judgments  0 of 4" in printed
    assert "  reasoning" in printed and "  writing" in printed

    header, records = read_results(out)
    assert header["judge"] == "openai:judge" and set(records) == {"81", "101"}
    rec = records["101"]  # a reasoning question: graded against the GPT-4 reference
    assert [j["judge"][1] for j in rec["judgments"]] == [
        "single-math-v1",
        "single-math-v1-multi-turn",
    ]
    assert [j["score"] for j in rec["judgments"]] == [7.0, 7.0]
    assert "[The Start of Reference Answer]" in rec["judgments"][0]["user_prompt"]
    assert rec["turns"] == ["Final answer.", "Final answer."]
    assert len(rec["calls"]) == 6 and all(c["cost_usd"] for c in rec["calls"])

    # the second turn carries the first: question 1, the MoA answer to it, question 2
    second = [r for r in srv.log("p1") if len(r["messages"]) == 3]
    assert len(second) == 2
    texts = [(m["role"], m["content"]) for m in second[0]["messages"]]
    assert texts[1] == ("assistant", "Final answer.")
    # the judge ran as FastChat's: temperature 0, max_tokens 2048, system + user message
    judged = srv.log("judge")
    assert len(judged) == 4
    assert {(r["temperature"], r["max_tokens"]) for r in judged} == {(0.0, 2048)}
    assert [m["role"] for m in judged[0]["messages"]] == ["system", "user"]

    # FastChat model_answer export next to the results
    exported = (tmp_path / "model_answer" / "tiny.jsonl").read_text().splitlines()
    assert [json.loads(line)["question_id"] for line in exported] == [81, 101]
    judged = (tmp_path / "model_judgment" / "judge_single.jsonl").read_text().splitlines()
    first = json.loads(judged[0])  # FastChat show_result.py reads these fields
    assert {"question_id", "model", "judge", "score", "turn"} <= set(first)
    assert (first["model"], first["judge"], first["score"]) == (
        "tiny",
        ["judge", "single-v1"],  # FastChat's naming: the model id, no provider
        7.0,
    )

    # resume: nothing is asked again
    calls = len(srv.log())
    assert main(args) == 0
    assert len(srv.log()) == calls
    # a larger selection resumes and runs only the new question
    assert main([*args[:-5], "81", "101", "82", "--output", str(out)]) == 0
    assert len(read_results(out)[1]) == 3
    assert len(srv.log("judge")) == 6

    # a longer timeout or other retries are not a different spec: resuming is allowed
    relaxed = _spec(tmp_path, srv, file="relaxed.yaml", timeout=30, retry={"max_attempts": 5})
    assert main([*args[:3], relaxed, *args[4:]]) == 0

    # a changed spec or judge is refused, and nothing is called
    calls = len(srv.log())
    changed = _spec(tmp_path, srv, file="changed.yaml", temperature=0.1)
    assert main([*args[:3], changed, *args[4:]]) == 2
    assert "different spec" in capsys.readouterr().err
    assert main([*args[:4], *_judge(srv, "judge2"), *args[8:]]) == 2
    assert "different judge" in capsys.readouterr().err
    assert len(srv.log()) == calls


def test_mt_bench_counts_unparsable_judgments_and_retries_failed_judging(
    tmp_path, srv, capsys
) -> None:
    srv.set_behavior("judge", Behavior(content="I would give it a seven."))
    out = tmp_path / "mt.jsonl"
    args = [
        "eval",
        "mt-bench",
        "--spec",
        _spec(tmp_path, srv),
        *_judge(srv),
        "-q",
        "--questions",
        "1",
        "--output",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "unparsable judgments  2 of 2" in printed
    assert "score (1-10)          -" in printed  # no score is guessed

    # a judge that fails is retried on resume without paying for the answers again
    out2 = tmp_path / "mt2.jsonl"
    srv.set_behavior("judge", Behavior(always_status=500))
    judge_file = tmp_path / "judge.yaml"  # a ModelSpec file: fast retries for this test
    judge_file.write_text(yaml.safe_dump({**_model(srv, "judge"), "name": None}))
    args2 = [*args[:4], "--judge", str(judge_file), *args[8:-1], str(out2)]
    assert main(args2) == 1  # nothing completed
    assert "failed                1 x judge: HTTP 500" in capsys.readouterr().out
    answers = len(srv.log("agg"))
    srv.set_behavior("judge", Behavior(content="Rating: [[9]]"))
    assert main(args2) == 0
    assert len(srv.log("agg")) == answers
    assert "score (1-10)          9.00" in capsys.readouterr().out


def test_pairwise_judges_both_orders_against_an_alpaca_eval_baseline(tmp_path, srv, capsys) -> None:
    prompts = ["Say hi.", "Name a colour."]
    (tmp_path / "prompts.json").write_text(json.dumps([{"instruction": p} for p in prompts]))
    (tmp_path / "ref.json").write_text(
        json.dumps([{"instruction": p, "output": "ok", "generator": "gpt4_turbo"} for p in prompts])
    )
    srv.set_behavior("judge", Behavior(content="Assistant A is better. [[A]]"))
    out = tmp_path / "pw.jsonl"
    args = [
        "eval",
        "pairwise",
        "--spec",
        _spec(tmp_path, srv),
        *_judge(srv),
        "-q",
        "--prompts",
        str(tmp_path / "prompts.json"),
        "--baseline-file",
        str(tmp_path / "ref.json"),
        "--output",
        str(out),
        "--export",
        "alpaca_eval",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    # the judge always prefers position A: both orders disagree, so every prompt is a tie
    assert "wins/ties/losses      0/2/0" in printed
    assert "baseline              gpt4_turbo" in printed
    assert "win rate %            50.0" in printed
    judged = srv.log("judge")
    assert len(judged) == 4
    _, records = read_results(out)
    for rec in records.values():
        game1, game2 = (j["user_prompt"] for j in rec["judgments"])
        mine = rec["output"]
        assert f"Assistant A's Answer]\n{mine}\n" in game1 and "B's Answer]\nok\n" in game1
        assert "A's Answer]\nok\n" in game2 and f"Assistant B's Answer]\n{mine}\n" in game2
    _, records = read_results(out)
    assert {r["winner"] for r in records.values()} == {"tie"}
    outputs = json.loads((tmp_path / "pw.model_outputs.json").read_text())
    assert [o["instruction"] for o in outputs] == prompts
    assert {tuple(sorted(o)) for o in outputs} == {("generator", "instruction", "output")}
    # our AlpacaEval export is itself a valid --baseline-file (round trip)
    exported = tmp_path / "pw.model_outputs.json"
    again = [*args[:-6], "--baseline-file", str(exported), "--output", str(tmp_path / "rt.jsonl")]
    assert main(again) == 0
    _, records = read_results(tmp_path / "rt.jsonl")
    assert {r["baseline_output"] for r in records.values()} == {o["output"] for o in outputs}

    # a prompt the baseline file lacks is refused before any call
    (tmp_path / "ref.json").write_text("[]")
    calls = len(srv.log())
    assert main([*args[:-4], "--output", str(tmp_path / "pw2.jsonl")]) == 2
    assert "no output for 2 prompt" in capsys.readouterr().err
    assert len(srv.log()) == calls


def test_mt_bench_category_temperature_and_judge_failures_in_pairwise(
    tmp_path, srv, capsys
) -> None:
    spec = _spec(tmp_path, srv)
    args = [
        "eval",
        "mt-bench",
        "--spec",
        spec,
        *_judge(srv),
        "-q",
        "--question-ids",
        "81",
        "101",
        "--output",
        str(tmp_path / "mt.jsonl"),
    ]
    assert main(args) == 0  # the default protocol is FastChat's
    printed = capsys.readouterr().out
    assert "generation            FastChat protocol" in printed
    assert "comparable            not with the MT-Bench leaderboard: judge openai:judge" in printed
    assert "2 of 80 questions answered" in printed
    for model in ("p1", "p2", "agg"):  # every model, proposers too (the MoA paper's setup)
        sent = srv.log(model)
        travel = [r for r in sent if "Compose an engaging travel" in json.dumps(r["messages"])]
        writing, reasoning = travel[0], next(r for r in sent if r not in travel)
        assert (writing["temperature"], writing["max_tokens"]) == (0.7, 1024)
        assert (reasoning["temperature"], reasoning["max_tokens"]) == (0.0, 1024)
    # --generation spec: the spec's own settings (its default max_tokens)
    before = len(srv.log("agg"))
    spec_args = [*args[:-1], str(tmp_path / "mt-spec.jsonl"), "--generation", "spec"]
    assert main(spec_args) == 0
    own = srv.log("agg")[before:]
    assert own and all(r.get("max_tokens") != 1024 for r in own)
    assert "generation            the spec's own" in capsys.readouterr().out

    # pairwise: a failed judge reruns on resume, reusing both answers
    (tmp_path / "prompts.txt").write_text("Say hi.\n")
    judge_file = tmp_path / "judge.yaml"
    judge_file.write_text(yaml.safe_dump({**_model(srv, "judge"), "name": None}))
    srv.set_behavior("judge", Behavior(always_status=500))
    pw = [
        "eval",
        "pairwise",
        "--spec",
        spec,
        "--baseline",
        _spec(tmp_path, srv, name="base"),
        "--judge",
        str(judge_file),
        "-q",
        "--prompts",
        str(tmp_path / "prompts.txt"),
        "--output",
        str(tmp_path / "pw.jsonl"),
    ]
    assert main(pw) == 1
    answered = len(srv.log("agg"))
    srv.set_behavior("judge", Behavior(content="[[A]]"))
    assert main(pw) == 0
    assert len(srv.log("agg")) == answered
    assert "wins/ties/losses      0/1/0" in capsys.readouterr().out


def test_pairwise_against_a_baseline_spec(tmp_path, srv, capsys) -> None:
    (tmp_path / "prompts.txt").write_text("Say hi.\n")
    srv.set_behaviors({"judge": Behavior(content="[[B]]"), "judge-b": Behavior(content="[[B]]")})
    base = _spec(tmp_path, srv, name="base")
    args = [
        "eval",
        "pairwise",
        "--spec",
        _spec(tmp_path, srv),
        "--baseline",
        base,
        *_judge(srv),
        "-q",
        "--prompts",
        str(tmp_path / "prompts.txt"),
        "--output",
        str(tmp_path / "pw.jsonl"),
    ]
    assert main(args) == 0
    assert "wins/ties/losses      0/1/0" in capsys.readouterr().out
    assert len(srv.log("agg")) == 2  # model and baseline both answered


def test_gsm8k_and_compare(tmp_path, srv, capsys) -> None:
    rows = [
        {"question": "2+2?", "answer": "2+2=4\n#### 4"},
        {"question": "3+4?", "answer": "#### 7"},
    ]
    (tmp_path / "gsm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    train = [{"question": f"{i}+1?", "answer": f"{i}+1={i + 1}\n#### {i + 1}"} for i in range(9)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    srv.set_behavior("agg", Behavior(content="So the result is 4.\n#### 4\nOr 7 maybe."))
    out = tmp_path / "gsm.jsonl.out"
    args = [
        "eval",
        "gsm8k",
        "--spec",
        _spec(tmp_path, srv),
        "-q",
        "--data",
        str(tmp_path / "gsm.jsonl"),
        "--train",
        str(tmp_path / "train.jsonl"),
        "--output",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "lm-evaluation-harness gsm8k, few-shot multi-turn" in printed
    assert "strict accuracy %     50.0" in printed
    assert "flexible accuracy %   50.0" in printed
    asked = [r for r in srv.log("p1") if "2+2?" in r["messages"][-1]["content"]][0]
    # lm-eval's chat rendering: 5 (user, assistant) example turns, then the question
    roles = [m["role"] for m in asked["messages"] if m["role"] != "system"]
    assert roles == ["user", "assistant"] * 5 + ["user"]
    assert asked["messages"][-1]["content"] == "Question: 2+2?\nAnswer:"
    assert (asked["temperature"], asked["max_tokens"]) == (0.0, 256)  # greedy, lm-eval's 256
    agg = srv.log("agg")[0]
    assert agg["stop"] == ["Question:", "</s>", "<|im_end|>"]  # the task's `until`

    target = tmp_path / "gsm_outputs.json"
    assert main(["eval", "export", str(out), "--format", "alpaca_eval", "--out", str(target)]) == 0
    assert [o["instruction"] for o in json.loads(target.read_text())] == ["2+2?", "3+4?"]
    assert main(["eval", "export", str(out), "--format", "fastchat"]) == 2  # MT-Bench only
    capsys.readouterr()

    png = tmp_path / "cmp.png"
    assert main(["eval", "compare", str(out), str(out), "--plot", str(png)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["spec", "eval", "judge"]
    assert table.count("tiny") == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_eval_input_fails_cleanly(tmp_path, srv, capsys) -> None:
    spec = _spec(tmp_path, srv)
    assert main(["eval", "mt-bench", "--spec", spec, *_judge(srv), "--question-ids", "7"]) == 2
    assert "unknown question ids [7]" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x", "answer": "no final"}\n')
    assert main(["eval", "gsm8k", "--spec", spec, "--data", str(bad)]) == 2
    assert "has no '#### N'" in capsys.readouterr().err
    assert srv.log() == []


@pytest.mark.slow
def test_mt_bench_with_the_embedded_model_as_answerer_and_judge(tmp_path, capsys) -> None:
    """The whole pipeline offline: the ``local`` preset answers, SmolLM2 judges. Its
    judgments are usually unparsable; the point is that they are recorded and counted."""
    out = tmp_path / "local.jsonl"
    args = [
        "eval",
        "mt-bench",
        "--generation",
        "spec",  # the preset's 128 tokens: 1024 on a busy CPU takes minutes
        "--preset",
        "local",
        "--judge",
        "local:smollm2",
        "--judge-max-tokens",
        "64",
        "--question-ids",
        "81",
        "-q",
        "--output",
        str(out),
        "--export",
        "fastchat",
    ]
    assert main(args) == 0
    assert "items                 1 completed, 0 failed of 1" in capsys.readouterr().out
    _, records = read_results(out)
    rec = records["81"]
    assert len(rec["turns"]) == 2 and all(rec["turns"])
    assert [j["turn"] for j in rec["judgments"]] == [1, 2]
    assert all(j["score"] == -1 or 1 <= j["score"] <= 10 for j in rec["judgments"])
    assert (tmp_path / "model_answer" / "local.jsonl").exists()


def test_calls_repeated_by_a_resume_are_counted(tmp_path, srv, capsys) -> None:
    """An answer that failed is asked again on resume: the first attempt's calls were paid
    for, so they stay in the totals (journaled as they were made) and are reported."""
    srv.set_behavior("agg", Behavior(always_status=500))
    srv.set_behavior("judge", Behavior(content="[[8]]"))
    out = tmp_path / "mt.jsonl"
    args = ["eval", "mt-bench", "--spec", _spec(tmp_path, srv, retry={**FAST, "max_attempts": 1})]
    args += [*_judge(srv), "-q", "--question-ids", "81", "--output", str(out)]
    assert main(args) == 1
    capsys.readouterr()
    first = len(srv.log("p1")) + len(srv.log("p2")) + len(srv.log("agg"))
    srv.set_behavior("agg", Behavior(content="Fine."))
    assert main(args) == 0
    printed = capsys.readouterr().out
    header, records, journal = read_all(out)
    s = summarize(header, records, journal)
    paid = len(srv.log("p1")) + len(srv.log("p2")) + len(srv.log("agg")) + len(srv.log("judge"))
    # the failed attempt's two proposers (tokens, cost) and its failed aggregator call
    assert s["repeated"]["calls"] == 3 == first
    assert s["repeated"]["cost_usd"] > 0
    assert s["all_calls"]["calls"] == s["moa"]["calls"] + 2 + s["repeated"]["calls"]
    assert s["all_calls"]["calls"] <= paid and first >= 2
    assert f"repeated by resume    {s['repeated']['calls']} calls" in printed


@pytest.mark.slow
def test_calls_in_flight_at_a_kill_are_counted_after_the_resume(tmp_path, srv, capsys) -> None:
    """kill -9 while the aggregator is answering: the proposers' calls were journaled as
    they finished, so after the resume (which asks them again) they are in the totals, as
    repeated, instead of missing."""
    import os
    import signal
    import subprocess
    import sys
    import time

    srv.set_behavior("agg", Behavior(hang=True))
    srv.set_behavior("judge", Behavior(content="[[6]]"))
    out = tmp_path / "mt.jsonl"
    args = ["eval", "mt-bench", "--spec", _spec(tmp_path, srv), *_judge(srv), "-q"]
    args += ["--question-ids", "81", "--output", str(out)]
    code = "import sys; from langgraph_moa.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *args])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = out.read_text().splitlines() if out.exists() else []
            if sum('"kind": "calls"' in line for line in lines) >= 2 and srv.log("agg"):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the proposers' calls were never journaled")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    srv.set_behavior("agg", Behavior(content="Done."))
    assert main(args) == 0
    printed = capsys.readouterr().out
    header, records, journal = read_all(out)
    s = summarize(header, records, journal)
    assert len(srv.log("p1")) == 3  # 1 before the kill, 2 turns after it
    assert s["moa"]["calls"] == 6 and s["repeated"]["calls"] == 2
    assert s["all_calls"]["calls"] == 6 + 2 + 2  # answers, judge, the killed attempt's
    assert "repeated by resume    2 calls" in printed
