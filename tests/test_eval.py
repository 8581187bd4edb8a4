"""Unit tests of the eval harness's pure parts: judgment parsing, pairwise logic, the
length-controlled estimate, GSM8K extraction, summary math, exports and the result store."""

from __future__ import annotations

import json
import math
import random

import pytest

from langgraph_moa.errors import MoAError
from langgraph_moa.eval import data, length_control, summary
from langgraph_moa.eval.export import alpaca_eval, fastchat
from langgraph_moa.eval.gsm8k import (
    FLEXIBLE,
    TASKS,
    exact_match,
    grade,
    prompts as gsm8k_prompts,
    regex_filter,
)
from langgraph_moa.eval.judge import judge_spec, parse_rating, parse_verdict
from langgraph_moa.eval.mt_bench import judge_prompt_name, judge_user_prompt
from langgraph_moa.eval.pairwise import combine, win_rate
from langgraph_moa.eval.store import ResultStore, read_results


@pytest.mark.parametrize(
    ("judgment", "rating"),
    [
        ("The answer is helpful. Rating: [[7]]", 7.0),
        ("Rating: [[8.5]]", 8.5),
        ("Rating: [[10]].", 10.0),
        ("first [[3]] then [[9]]", 3.0),  # the first double-bracket rating wins
        ("a list [1] and later [[6]]", 6.0),  # [[x]] is tried before the single-bracket backup
        ("Rating: [6]", 6.0),  # the backup pattern
        ("I rate it 7 out of 10", -1.0),  # no brackets: unparsable, never guessed
        ("Rating: [[seven]]", -1.0),
        ("Rating: [[-3]]", -1.0),  # FastChat's pattern takes digits only
        ("$ERROR$", -1.0),
    ],
)
def test_rating_is_parsed_with_fastchats_patterns(judgment: str, rating: float) -> None:
    assert parse_rating(judgment) == rating


def test_pairwise_verdicts_and_both_order_combination() -> None:
    assert [parse_verdict(t) for t in ("x [[A]]", "[[B]]", "[[C]]", "A is better")] == [
        "A",
        "B",
        "tie",
        "error",
    ]
    # game 1 shows the model as A, game 2 as B
    assert combine("A", "B") == "model"
    assert combine("B", "A") == "baseline"
    assert combine("A", "A") == "tie"  # position bias: disagreement is a tie
    assert combine("B", "B") == "tie"
    assert combine("tie", "B") == "tie"
    assert combine("tie", "tie") == "tie"
    assert combine("A", "error") == "error"


def test_win_rate_counts_ties_half_with_a_normal_interval() -> None:
    rate = win_rate(["model", "model", "tie", "baseline", "error"])
    assert rate["n"] == 4
    assert rate["win_rate"] == pytest.approx(62.5)
    prefs = [1, 1, 0.5, 0]
    se = math.sqrt(sum((p - 0.625) ** 2 for p in prefs) / 3 / 4)
    assert rate["standard_error"] == pytest.approx(100 * se)
    assert rate["ci_low"] == pytest.approx(100 * (0.625 - 1.96 * se))
    assert rate["ci_high"] == pytest.approx(min(100.0, 100 * (0.625 + 1.96 * se)))


def _annotations(n: int, seed: int = 7) -> list[dict]:
    """Synthetic AlpacaEval annotations: the judge prefers the longer answer (P(model) =
    sigmoid(0.4 + 1.5 tanh(Δ/σ))), and the model writes longer answers on average."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        base, mine = rng.randint(200, 1500), rng.randint(200, 2500)
        p = 1 / (1 + math.exp(-(0.4 + 1.5 * math.tanh((mine - base) / 700))))
        u = rng.random()
        rows.append(
            {
                "instruction": f"prompt {i}",
                "output_1": "b" * base,
                "output_2": "m" * mine,
                "generator_1": "base",
                "generator_2": "moa",
                "annotator": "gpt-4o_pair-v2_both_orders",
                "preference": 2.0 if u < 0.9 * p else 1.5 if u < p else 1.0,
                "index": i,
            }
        )
    return rows


def test_length_controlled_win_rate_removes_a_length_bias() -> None:
    rows = _annotations(805)
    raw = 100 * sum(r["preference"] - 1 for r in rows) / len(rows)
    lc = length_control.lc_win_rate(rows, prefer_official=False)
    assert lc["variant"].startswith("length_controlled_minimal, langgraph_moa")
    assert raw > 66  # the length bias the LC rate must remove
    assert 52 < lc["lc_win_rate"] < raw - 5
    assert lc["lc_standard_error"] == 0  # one prediction for every prompt, as AlpacaEval's
    # no length difference at all: the LC rate is the raw rate (the GLM is its intercept)
    same = [{**r, "output_1": "x", "output_2": "y"} for r in rows[:40]]
    flat = length_control.lc_win_rate(same, prefer_official=False)
    raw40 = 100 * sum(r["preference"] - 1 for r in same) / 40
    assert flat["lc_win_rate"] == pytest.approx(raw40, abs=1.5)


@pytest.mark.parametrize(
    ("answer", "strict", "flexible"),
    [
        ("So she has 18 eggs.\n#### 18", "18", "18"),
        ("#### 1,234", "1,234", "1,234"),
        ("The total is $1,234.50. #### $1,234.50", "[invalid]", "$1,234.50"),
        ("First 3, then 5, so the answer is 8.", "[invalid]", "8."),
        ("It costs -4 dollars #### -4", "-4", "-4"),
        ("no numbers at all", "[invalid]", "[invalid]"),
        ("####18", "[invalid]", "18"),  # lm-eval's strict regex needs '#### '
        ("#### $18", "[invalid]", "$18"),
        ("####\n18", "[invalid]", "18"),
    ],
)
def test_gsm8k_extraction_is_lm_evals(answer: str, strict: str, flexible: str) -> None:
    assert regex_filter(answer, TASKS["gsm8k"]["strict"]) == strict
    assert regex_filter(answer, FLEXIBLE, group_select=-1) == flexible


def test_gsm8k_exact_match_compares_strings_after_lm_evals_filters() -> None:
    ref = "Half of 36 is 18.\n#### 18"
    assert exact_match("18", ref) and exact_match("$18.", ref) and exact_match("1,8", ref)
    assert not exact_match("18.00", ref)  # strings, not numbers
    assert not exact_match("18.0", ref) and not exact_match("[invalid]", ref)
    graded = grade("Work... so 1,234 in total.", "steps\n#### 1,234")
    assert graded["strict_correct"] is False and graded["flexible_correct"] is True
    graded = grade("#### 72\nActually 71", "#### 72")
    assert graded["strict_correct"] is True and graded["flexible_correct"] is False
    cot = grade("The answer is 72.", "x #### 72", "gsm8k_cot")
    assert cot["target"] == "72" and cot["strict_correct"] and cot["flexible_correct"]


def test_gsm8k_prompts_are_lm_evals_5_shot_and_cot() -> None:
    train = [{"question": f"t{i}?", "answer": f"w{i}\n#### {i}"} for i in range(50)]
    test = [{"question": "q0?", "answer": "#### 1"}, {"question": "q1?", "answer": "#### 2"}]
    rnd = random.Random(1234)  # lm-eval's fewshot seed, one sampler for the whole split
    expected = [rnd.sample(train, 5) for _ in test]
    single = gsm8k_prompts("gsm8k", test, train, single_turn=True)
    multi = gsm8k_prompts("gsm8k", test, train)
    for one, turns, shots, row in zip(single, multi, expected, test, strict=True):
        body = "".join(f"Question: {s['question']}\nAnswer: {s['answer']}\n\n" for s in shots)
        assert one == [("user", f"{body}Question: {row['question']}\nAnswer:")]
        assert turns == [m for s in shots for m in pairs_of(s)] + [
            ("user", f"Question: {row['question']}\nAnswer:")
        ]
    assert single[0] != single[1]  # the sampler's state runs on from one question to the next
    (cot,) = gsm8k_prompts("gsm8k_cot", test[:1], None, single_turn=True)
    assert cot[0][1].startswith("Q: There are 15 trees in the grove.")
    assert cot[0][1].count("\nA: ") == 8 and cot[0][1].endswith("Q: q0?\nA:")
    assert len(gsm8k_prompts("gsm8k_cot", test[:1], None)[0]) == 17  # 8 x (user, assistant) + 1


def pairs_of(shot: dict) -> list[tuple[str, str]]:
    return [("user", f"Question: {shot['question']}\nAnswer:"), ("assistant", shot["answer"])]


def test_mt_bench_prompt_choice_and_formatting_follow_fastchat() -> None:
    prompts = data.judge_prompts()
    assert judge_prompt_name("writing", 1) == "single-v1"
    assert judge_prompt_name("math", 1) == "single-math-v1"
    assert judge_prompt_name("coding", 2) == "single-math-v1-multi-turn"
    assert judge_prompt_name("roleplay", 2) == "single-v1-multi-turn"
    q = {"turns": ["Q1?", "Q2?"]}
    one = judge_user_prompt(prompts["single-math-v1"], q, ["A1", "A2"], 1, ["R1", "R2"])
    assert "[Question]\nQ1?\n\n[The Start of Reference Answer]\nR1\n" in one
    assert "[The Start of Assistant's Answer]\nA1\n[The End of Assistant's Answer]" in one
    two = judge_user_prompt(prompts["single-v1-multi-turn"], q, ["A1", "A2"], 2, None)
    assert "### User:\nQ1?\n\n### Assistant A:\nA1\n\n### User:\nQ2?\n\n### Assistant A:\nA2" in two


def test_shipped_mt_bench_data_is_complete() -> None:
    questions = data.mt_bench_questions()
    refs = data.mt_bench_references()
    assert len(questions) == 80 and all(len(q["turns"]) == 2 for q in questions)
    need = {q["question_id"] for q in questions if q["category"] in data.NEED_REF_CATS}
    assert len(need) == 30 and need <= set(refs)
    assert {"single-v1", "single-math-v1", "single-v1-multi-turn", "pair-v2"} <= set(
        data.judge_prompts()
    )
    assert "Apache License" in data.MT_BENCH.joinpath("LICENSE").read_text("utf-8")


def _call(cost: float | None, tin: int = 10, tout: int = 5) -> dict:
    return {"input_tokens": tin, "output_tokens": tout, "cost_usd": cost}


def test_mt_bench_summary_math() -> None:
    records = {
        "1": {
            "category": "writing",
            "latency_s": 1.0,
            "calls": [_call(0.1)],
            "prompt_turns": ["q1", "q2"],
            "turns": ["a1", "a2"],
            "judgments": [{"turn": 1, "score": 8.0}, {"turn": 2, "score": 6.0}],
        },
        "2": {
            "category": "math",
            "latency_s": 3.0,
            "calls": [_call(0.2)],
            "prompt_turns": ["q1", "q2"],
            "turns": ["a1", "a2"],
            "judgments": [{"turn": 1, "score": 4.0}, {"turn": 2, "score": -1.0}],
        },
        "3": {
            "category": "math",
            "latency_s": 9.0,
            "calls": [_call(0.3)],
            "prompt_turns": ["q1", "q2"],
            "turns": [],
            "judgments": [],
            "error": "turn 1: boom",
        },
        "4": {  # a judge call failed on turn 2: turn 1's score is kept, as FastChat keeps it
            "category": "writing",
            "latency_s": 2.0,
            "calls": [],
            "prompt_turns": ["q1", "q2"],
            "turns": ["a1", "a2"],
            "judgments": [
                {"turn": 1, "score": 10.0},
                {"turn": 2, "score": -1.0, "error": "HTTP 500", "judgment": "$ERROR$"},
            ],
            "error": "judge: HTTP 500",
        },
    }
    header = {"eval": "mt-bench", "spec_name": "x", "judge": "openai:gpt-4"}
    s = summary.summarize({**header, "generation": "fastchat"}, records)
    assert s["turn_1"] == pytest.approx(22 / 3)
    assert s["turn_2"] == pytest.approx(6.0)  # the unparsable -1 is excluded, not averaged
    assert s["score"] == pytest.approx(28 / 4)
    assert s["categories"] == {"math": 4.0, "writing": 8.0}
    assert (s["unparsable"], s["judge_failures"], s["judgments"]) == (1, 1, 6)
    assert (s["completed"], s["failed"]) == (2, 2)
    assert s["not_comparable"] == [
        "3 of 80 questions answered",
        "1 judge call(s) failed (rerun to retry them)",
    ]
    spec_run = summary.summarize({**header, "judge": "openai:gpt-4o"}, records)
    assert spec_run["not_comparable"][:2] == [
        "judge openai:gpt-4o is not GPT-4 (openai:gpt-4)",
        "generation protocol is the spec's own, not FastChat's (--generation spec)",
    ]
    records = {k: v for k, v in records.items() if k != "4"}
    s = summary.summarize({**header, "generation": "fastchat"}, records)
    assert s["moa"] == {
        "calls": 3,
        "input_tokens": 30,
        "output_tokens": 15,
        "cost_usd": pytest.approx(0.6),
    }
    assert s["latency_p50_s"] == pytest.approx(2.0)
    assert s["latency_p95_s"] == pytest.approx(2.9)
    assert "unparsable judgments  1 of 4" in summary.render(s)


def test_usage_cost_is_unknown_unless_every_call_is_priced() -> None:
    assert summary.usage([_call(0.1), _call(None)])["cost_usd"] is None
    assert summary.usage([])["cost_usd"] is None
    assert summary.percentile([5.0], 95) == 5.0 and summary.percentile([], 50) is None


def test_exports_match_the_official_formats() -> None:
    header = {"eval": "mt-bench", "spec_name": "moa-lite"}
    records = {
        "81": {
            "question_id": 81,
            "prompt_turns": ["Q1", "Q2"],
            "turns": ["A1", "A2"],
            "tstamp": 1.5,
        },
        "82": {"question_id": 82, "turns": [], "error": "turn 1: failed"},
    }
    rows = fastchat(header, records)
    assert len(rows) == 1  # failed items are not exported
    row = rows[0]
    # FastChat's load_model_answers / gen_judgment read exactly these fields
    assert set(row) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
    assert row["question_id"] == 81 and isinstance(row["answer_id"], str)
    assert row["model_id"] == "moa-lite"
    assert row["choices"] == [{"index": 0, "turns": ["A1", "A2"]}]
    json.dumps(rows)
    assert fastchat(header, records)[0]["answer_id"] == row["answer_id"]  # stable on re-export
    outs = alpaca_eval(
        {"eval": "pairwise", "spec_name": "moa"}, {"a": {"instruction": "Hi", "output": "Hello"}}
    )
    # AlpacaEval's model_outputs.json: a list of instruction/output/generator objects
    assert outs == [{"instruction": "Hi", "output": "Hello", "generator": "moa"}]
    assert alpaca_eval(header, records) == [
        {"instruction": "Q1", "output": "A1", "generator": "moa-lite"}
    ]
    with pytest.raises(MoAError, match="fastchat needs MT-Bench"):
        fastchat({"eval": "gsm8k", "spec_name": "x"}, {})


def _header(spec: str = "s1", judge: str = "j1") -> dict:
    return {
        "eval": "mt-bench",
        "spec_name": "x",
        "judge": judge,
        "fingerprints": {
            "eval": "mt-bench",
            "spec": spec,
            "judge": judge,
            "data": "d",
            "settings": "n",
        },
    }


def test_store_resumes_skipping_done_items_and_refuses_a_changed_spec(tmp_path) -> None:
    path = tmp_path / "r.jsonl"
    store = ResultStore(path, _header())
    store.add({"id": "1", "score": 1})
    store.add({"id": "2", "error": "boom"})
    with path.open("a") as f:
        f.write('{"kind": "item", "id": "3", "sco')  # a line cut by a crash
    again = ResultStore(path, _header())
    assert again.done("1") and not again.done("2") and not again.done("3")
    again.add({"id": "2", "score": 2})  # the retried item replaces the failed one
    _, records = read_results(path)
    assert records["2"] == {"id": "2", "score": 2}
    with pytest.raises(MoAError, match="different spec"):
        ResultStore(path, _header(spec="s2"))
    with pytest.raises(MoAError, match="different judge"):
        ResultStore(path, _header(judge="j2"))


def test_judge_spec_forces_fastchat_settings(tmp_path, monkeypatch) -> None:
    spec = judge_spec("local:smollm2")
    assert (spec.temperature, spec.max_tokens, spec.timeout) == (0.0, 2048, None)
    spec = judge_spec("openai:gpt-4o", base_url="http://127.0.0.1:1/v1", max_tokens=64)
    assert (spec.base_url, spec.max_tokens, spec.key_env) == ("http://127.0.0.1:1/v1", 64, None)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MoAError, match="OPENAI_API_KEY"):
        judge_spec("openai:gpt-4o")
    f = tmp_path / "judge.yaml"
    f.write_text("model: openai:gpt-4o\nbase_url: http://x/v1\nprice: {input: 2.5, output: 10}\n")
    spec = judge_spec(str(f))
    assert spec.price is not None and spec.temperature == 0.0
    with pytest.raises(MoAError, match="unknown provider"):
        judge_spec("nosuch:model")


async def test_runner_bounds_concurrency_and_writes_each_item_as_it_completes(tmp_path) -> None:
    import asyncio

    from langgraph_moa.eval.runner import run_items

    store = ResultStore(tmp_path / "r.jsonl", _header())
    store.add({"id": "0", "v": 0})  # done before: skipped
    in_flight, peak = 0, 0
    lines_seen: list[int] = []

    async def work(i: int) -> dict:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        # every item finished so far is already on disk
        lines_seen.append(len((tmp_path / "r.jsonl").read_text().splitlines()))
        await asyncio.sleep(0.01 * (i % 3))
        in_flight -= 1
        return {"v": i}

    ran = await run_items(list(range(10)), str, work, store, concurrency=3, progress=False)
    assert ran == 9 and peak == 3
    _, records = read_results(tmp_path / "r.jsonl")
    assert sorted(records, key=int) == [str(i) for i in range(10)]
    assert max(lines_seen) > 2  # later items saw earlier results already written


async def test_judge_records_usage_and_a_timeout_without_raising(server) -> None:
    from langgraph_moa.eval.judge import Judge
    from langgraph_moa.graphs.spec import ModelSpec
    from langgraph_moa.testing import Behavior

    server.set_behavior("judge", Behavior(content="Rating: [[4]]"))
    spec = ModelSpec(
        model="openai:judge",
        base_url=server.base_url,
        temperature=0,
        price={"input": 1.0, "output": 2.0},
    )
    text, call = await Judge(spec)("system", "user")
    assert text == "Rating: [[4]]" and call["status"] == "ok"
    assert call["input_tokens"] > 0 and call["output_tokens"] > 0
    assert call["cost_usd"] == pytest.approx(
        (call["input_tokens"] * 1.0 + call["output_tokens"] * 2.0) / 1e6
    )
    server.set_behavior("slow", Behavior(hang=True))
    slow = ModelSpec(
        model="openai:slow", base_url=server.base_url, timeout=0.2, retry={"max_attempts": 1}
    )
    text, call = await Judge(slow)("system", "user")
    assert (text, call["status"], call["error"]) == ("$ERROR$", "failed", "timed out after 0.2 s")


def test_pareto_front_keeps_only_points_nothing_cheaper_beats() -> None:
    from langgraph_moa.eval.compare import pareto_front

    points = [(3.0, 9.0), (1.0, 7.0), (2.0, 6.5), (2.5, 8.0), (1.0, 6.0), (4.0, 8.5)]
    assert pareto_front(points) == [(1.0, 7.0), (2.5, 8.0), (3.0, 9.0)]
