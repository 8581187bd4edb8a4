"""MT-Bench: both turns answered by the MoA graph (the second turn sees the first answer,
as FastChat's ``gen_model_answer``), each turn graded by single-answer grading exactly as
FastChat's ``gen_judgment --mode single``:

- turn 1: ``single-v1``, or ``single-math-v1`` with the GPT-4 reference for math, reasoning
  and coding; turn 2: the ``-multi-turn`` variant of the same prompt (whole conversation);
- the judge's system message is the prompt's ``system_prompt``, the user message its
  ``prompt_template`` formatted with ``question``/``answer`` (``question_1``... for turn 2);
- rating: ``[[x]]`` else ``[x]``, else -1 (unparsable: counted, excluded from averages).
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from langgraph_moa.eval.answer import moa_answer
from langgraph_moa.eval.data import NEED_REF_CATS
from langgraph_moa.eval.judge import Judge, parse_rating

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
"""FastChat ``gen_model_answer``'s sampling temperature per category (``--category-temperature``
applies it to every model of the spec; by default each model keeps its own)."""


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
    graph: CompiledStateGraph,
    judge: Judge,
    question: dict[str, Any],
    prompts: dict[str, dict[str, Any]],
    references: dict[int, list[str]],
    previous: dict[str, Any] | None = None,
    category_temperature: bool = False,
) -> dict[str, Any]:
    """Answer both turns, then judge each; the record written to the result file.

    ``previous``: this question's record from an interrupted run; if its answers are complete
    (only the judge failed) they are reused, not paid for again."""
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
    if previous and len(previous.get("turns") or []) == len(question["turns"]):
        for key in ("turns", "calls", "latency_s"):
            record[key] = previous[key]
    messages: list[tuple[str, str]] = []
    for text in question["turns"] if not record["turns"] else []:
        messages.append(("user", text))
        temperature = CATEGORY_TEMPERATURE.get(category, 0.7) if category_temperature else None
        result = await moa_answer(graph, list(messages), temperature)
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
        name = judge_prompt_name(category, turn)
        template = prompts[name]
        user = judge_user_prompt(template, question, record["turns"], turn, reference)
        judgment, call = await judge(str(template["system_prompt"]), user)
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
