"""GSM8K exactly as lm-evaluation-harness 0.4.x scores it (tasks ``gsm8k`` and ``gsm8k_cot``,
``lm_eval/tasks/gsm8k/*.yaml``), with the MoA graph as the chat model:

- prompt (``gsm8k``): 5 examples of the train split, then the question. As lm-eval renders
  it for a chat model (``--apply_chat_template``, whose default since 0.4.9 is
  ``--fewshot_as_multiturn``): one user turn ``Question: <q>\\nAnswer:`` and one assistant
  turn ``<answer, with its '#### N'>`` per example, then the user turn of the question.
  ``single_turn`` collapses them into one user message instead (``--fewshot_as_multiturn
  false``): ``Question: <q>\\nAnswer: <a>\\n\\n ... Question: <q>\\nAnswer:``;
  the examples drawn as lm-eval draws them: one ``random.Random(1234)`` (its default
  ``fewshot_random_seed``) shared by the test questions in order, ``rnd.sample(train, 5)``
  each; so the first N questions get the same examples as ``lm_eval --limit N``;
- ``gsm8k_cot``: the 8 fixed chain-of-thought exemplars (``Q: ...\\nA: ...``), target the
  number after ``####``;
- generation: greedy (temperature 0) and lm-eval's default 256 new tokens for every model of
  the spec (as the MoA paper gives all models one setting), the task's ``until`` as the
  answer's stop sequences;
- scoring: lm-eval's filters (``regex`` then ``take_first``): strict-match
  ``#### (\\-?[0-9\\.\\,]+)`` (``The answer is (\\-?[0-9\\.\\,]+).`` for CoT) and flexible-extract
  ``(-?[$0-9.,]{2,})|(-?[0-9]+)`` with the last match (``group_select: -1``), ``[invalid]``
  when nothing matches; then ``exact_match`` with ``ignore_case``, no punctuation removal, and
  ``regexes_to_ignore`` ``,`` ``\\$`` ``(?s).*#### `` ``\\.$`` on both prediction and target,
  compared as strings (``18.00`` is not ``18``).
"""

from __future__ import annotations

import json
import random
import re
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from langgraph_moa.eval.answer import Journal, moa_answer

if TYPE_CHECKING:
    from langgraph_moa.graphs.builder import CompiledMoA

FALLBACK = "[invalid]"
FLEXIBLE = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
REGEXES_TO_IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")
FEWSHOT_SEED = 1234
"""lm-eval's ``DEFAULT_OTHER_SEED``: the few-shot sampler's seed."""
MAX_GEN_TOKS = 256
"""lm-eval's ``DEFAULT_MAX_GEN_TOKS`` (the gsm8k tasks set none of their own)."""

TASKS: dict[str, dict[str, Any]] = {
    "gsm8k": {
        "strict": r"#### (\-?[0-9\.\,]+)",
        "until": ["Question:", "</s>", "<|im_end|>"],
        "num_fewshot": 5,
    },
    "gsm8k_cot": {
        "strict": r"The answer is (\-?[0-9\.\,]+).",
        "until": ["Q:", "</s>", "<|im_end|>"],
        "num_fewshot": 8,
    },
}


def cot_exemplars() -> list[dict[str, str]]:
    """``gsm8k_cot``'s 8 exemplars (lm-eval, MIT; see data/gsm8k/NOTICE)."""
    path = (
        files("langgraph_moa.eval").joinpath("data").joinpath("gsm8k").joinpath("cot_fewshot.json")
    )
    rows: list[dict[str, str]] = json.loads(path.read_text("utf-8"))
    return rows


Conversation = list[tuple[str, str]]


def prompts(
    task: str,
    test: list[dict[str, Any]],
    train: list[dict[str, Any]] | None,
    single_turn: bool = False,
) -> list[Conversation]:
    """The messages for each test question, in order (the sampler's state runs on)."""
    if task == "gsm8k_cot":
        cot = [(f"Q: {s['question']}\nA:", s["target"]) for s in cot_exemplars()]
        return [_render(cot, f"Q: {row['question']}\nA:", single_turn) for row in test]
    if not train:
        raise ValueError("gsm8k needs the train split for its 5-shot examples")
    rnd = random.Random(FEWSHOT_SEED)
    out = []
    for row in test:
        shots = rnd.sample(train, TASKS["gsm8k"]["num_fewshot"])
        pairs = [(f"Question: {s['question']}\nAnswer:", s["answer"]) for s in shots]
        out.append(_render(pairs, f"Question: {row['question']}\nAnswer:", single_turn))
    return out


def _render(shots: list[tuple[str, str]], question: str, single_turn: bool) -> Conversation:
    """lm-eval's ``fewshot_context``: user/assistant turns, or one user message joined with
    its delimiters (``target_delimiter`` " ", ``fewshot_delimiter`` blank line)."""
    if single_turn:
        return [("user", "".join(f"{q} {a}\n\n" for q, a in shots) + question)]
    turns: Conversation = []
    for q, a in shots:
        turns += [("user", q), ("assistant", a)]
    return [*turns, ("user", question)]


def target(task: str, answer: str) -> str:
    """lm-eval's ``doc_to_target``: the whole answer (gsm8k), the number after ``####``
    stripped (gsm8k_cot)."""
    return answer.split("####")[-1].strip() if task == "gsm8k_cot" else answer


def regex_filter(response: str, pattern: str, group_select: int = 0) -> str:
    """lm-eval's ``RegexFilter`` on one response (``take_first`` then keeps it)."""
    found = re.findall(pattern, response)
    if not found:
        return FALLBACK
    match = found[group_select]
    if isinstance(match, tuple):
        parts = [m for m in match if m]
        match = parts[0] if parts else FALLBACK
    return str(match).strip()


def exact_match(prediction: str, reference: str) -> bool:
    """lm-eval's ``exact_match`` as the gsm8k tasks configure it."""
    for pattern in REGEXES_TO_IGNORE:
        prediction = re.sub(pattern, "", prediction)
        reference = re.sub(pattern, "", reference)
    return prediction.lower() == reference.lower()


def grade(answer: str, reference: str, task: str = "gsm8k") -> dict[str, Any]:
    gold = target(task, reference)
    strict = regex_filter(answer, TASKS[task]["strict"])
    flexible = regex_filter(answer, FLEXIBLE, group_select=-1)
    return {
        "target": gold,
        "strict": strict,
        "flexible": flexible,
        "strict_correct": exact_match(strict, gold),
        "flexible_correct": exact_match(flexible, gold),
    }


async def run_problem(
    graph: CompiledMoA,
    row: dict[str, Any],
    prompt: Conversation,
    task: str = "gsm8k",
    journal: Journal | None = None,
) -> dict[str, Any]:
    result = await moa_answer(
        graph, list(prompt), 0.0, MAX_GEN_TOKS, journal, stop=TASKS[task]["until"]
    )
    record: dict[str, Any] = {
        "question": row["question"],
        "reference": row["answer"],
        "prompt": [list(m) for m in prompt],
        "output": result["answer"],
        "calls": result["calls"],
        "latency_s": result["latency_s"],
        "error": result["error"],
    }
    if result["answer"] is not None:
        record.update(grade(result["answer"], row["answer"], task))
    return record
