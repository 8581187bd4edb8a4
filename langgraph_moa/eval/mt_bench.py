"""MT-Bench: both turns answered by the MoA graph (the second turn sees the first answer,
as FastChat's ``gen_model_answer``), each turn graded by single-answer grading exactly as
FastChat's ``gen_judgment --mode single``:

- turn 1: ``single-v1``, or ``single-math-v1`` with the GPT-4 reference for math, reasoning
  and coding; turn 2: the ``-multi-turn`` variant of the same prompt (whole conversation);
- the judge's system message is the prompt's ``system_prompt``, the user message its
  ``prompt_template`` formatted with ``question``/``answer`` (``question_1``... for turn 2);
- rating: ``[[x]]`` else ``[x]``, else -1 (unparsable: counted, excluded from averages);
- a judge call that fails is recorded as FastChat records it: that turn's judgment is
  ``$ERROR$`` with score -1, the other turn keeps its score; a resume re-judges only that turn.

Generation protocols (``--generation``):

- ``fastchat`` (default): FastChat ``gen_model_answer``'s settings, so scores are comparable
  with the MT-Bench leaderboard: per-category temperature (``CATEGORY_TEMPERATURE``) and 1024
  new tokens. As in the MoA paper's own MT-Bench script (``generate_for_mt_bench.py``, which
  passes one temperature and ``max_tokens`` to the reference models and the aggregator), every
  model of the spec gets them, proposers included (``Context.temperature``/``max_tokens``);
- ``spec``: each model keeps the spec's own temperature and max_tokens.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from langgraph_moa.eval.answer import moa_answer
from langgraph_moa.eval.data import NEED_REF_CATS
from langgraph_moa.eval.judge import Judge, parse_rating

if TYPE_CHECKING:
    from langgraph_moa.graphs.builder import CompiledMoA

CATEGORY_TEMPERATURE = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}
"""FastChat ``common.temperature_config``: the sampling temperature per category (0.7 for any
other category, as ``gen_model_answer``)."""

MAX_NEW_TOKENS = 1024
"""FastChat ``gen_model_answer --max-new-token`` default."""

PROTOCOLS = ("fastchat", "spec")


def generation(category: str, protocol: str) -> tuple[float | None, int | None]:
    """(temperature, max_tokens) overriding every model for a question; (None, None) keeps
    the spec's own settings."""
    if protocol == "spec":
        return None, None
    return CATEGORY_TEMPERATURE.get(category, 0.7), MAX_NEW_TOKENS


def judge_prompt_name(category: str, turn: int) -> str:
    base = "single-math-v1" if category in NEED_REF_CATS else "single-v1"
    return base if turn == 1 else f"{base}-multi-turn"


def judge_user_prompt(
    template: dict[str, Any],
    question: dict[str, Any],
    answers: list[str],
    turn: int,
    reference: list[str] | None,
) -> str:
    """FastChat ``run_judge_single``'s formatting of the judge's user message."""
    kwargs: dict[str, str] = {}
    if reference is not None:
        kwargs["ref_answer_1"] = reference[0]
        kwargs["ref_answer_2"] = reference[1] if len(reference) > 1 else ""
    if turn == 2:
        return str(template["prompt_template"]).format(
            question_1=question["turns"][0],
            question_2=question["turns"][1],
            answer_1=answers[0],
            answer_2=answers[1],
            **kwargs,
        )
    return str(template["prompt_template"]).format(
        question=question["turns"][0], answer=answers[0], **kwargs
    )


async def run_question(
    graph: CompiledMoA,
    judge: Judge,
    question: dict[str, Any],
    prompts: dict[str, dict[str, Any]],
    references: dict[int, list[str]],
    previous: dict[str, Any] | None = None,
    protocol: str = "fastchat",
    journal: Any = None,
) -> dict[str, Any]:
    """Answer both turns, then judge each; the record written to the result file.

    ``previous``: this question's record from an interrupted run; if its answers are complete
    (only the judge failed) they are reused, not paid for again, and so are the judgments
    that succeeded. ``journal(calls)`` is told of every call as soon as it is made (the
    result file's spend journal: a kill loses no paid call)."""
    category = question["category"]
    record: dict[str, Any] = {
        "question_id": question["question_id"],
        "category": category,
        "prompt_turns": question["turns"],
        "turns": [],
        "calls": [],
        "latency_s": 0.0,
        "judgments": [],
        "judge_calls": [],
        "error": None,
    }
    kept: dict[int, dict[str, Any]] = {}
    if previous and len(previous.get("turns") or []) == len(question["turns"]):
        for key in ("turns", "calls", "latency_s"):
            record[key] = previous[key]
        kept = {j["turn"]: j for j in previous.get("judgments", []) if not j.get("error")}
        calls = previous.get("judge_calls", [])
        record["judge_calls"] = [c for c in calls if c.get("turn") in kept]
    messages: list[tuple[str, str]] = []
    temperature, max_tokens = generation(category, protocol)
    for text in question["turns"] if not record["turns"] else []:
        messages.append(("user", text))
        result = await moa_answer(graph, list(messages), temperature, max_tokens, journal)
        record["calls"] += result["calls"]
        record["latency_s"] = round(record["latency_s"] + result["latency_s"], 4)
        if result["error"]:
            record["error"] = f"turn {len(messages) // 2 + 1}: {result['error']}"
            return record
        record["turns"].append(result["answer"])
        messages.append(("assistant", result["answer"]))
    reference = references.get(question["question_id"]) if category in NEED_REF_CATS else None
    if category in NEED_REF_CATS and reference is None:
        record["error"] = f"no reference answer for question {question['question_id']}"
        return record
    for turn in range(1, min(2, len(question["turns"])) + 1):
        if turn in kept:
            record["judgments"].append(kept[turn])
            continue
        name = judge_prompt_name(category, turn)
        template = prompts[name]
        user = judge_user_prompt(template, question, record["turns"], turn, reference)
        judgment, call = await judge(str(template["system_prompt"]), user)
        call["turn"] = turn
        if journal is not None:
            journal([call])
        record["judge_calls"].append(call)
        record["judgments"].append(
            {
                "turn": turn,
                "judge": [judge.name, name],
                "user_prompt": user,
                "judgment": judgment,
                "score": parse_rating(judgment),
                "error": call.get("error"),
            }
        )
    if errors := [j["error"] for j in record["judgments"] if j["error"]]:
        record["error"] = f"judge: {errors[0]}"
    record["tstamp"] = time.time()
    return record
