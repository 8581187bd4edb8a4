"""Our scores against the official tools' own code, on the same data (all three install from
PyPI without torch and are test dependencies: fschat 0.2.36, alpaca_eval 0.6.6,
lm_eval 0.4.13):

- FastChat ``show_result.py --mode single`` on our exported judgments gives our summary;
- AlpacaEval's ``get_length_controlled_winrate`` on our exported annotations gives our LC
  win rate (n = 30, 100, 805; both GLMs), and our own implementation agrees with it;
- lm-evaluation-harness's ``regex``/``take_first`` filters and ``exact_match`` on our GSM8K
  outputs give our grades;
- an export into a FastChat folder holding another model's lines keeps them.
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from langgraph_moa.eval import length_control, summary
from langgraph_moa.eval.export import export
from langgraph_moa.eval.gsm8k import FLEXIBLE, TASKS, grade
from langgraph_moa.eval.store import ResultStore, read_all


def _write(path: Path, header: dict[str, Any], records: list[dict[str, Any]]) -> Path:
    store = ResultStore(path, {**header, "fingerprints": {}})
    for rec in records:
        store.add(rec)
    return path


def _mt_bench_records(model_seed: int) -> list[dict[str, Any]]:
    """80 judged questions with varied scores, an unparsable rating and a failed judge call."""
    rng = random.Random(model_seed)
    cats = ["writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem"]
    out = []
    for qid in range(81, 161):
        judgments = []
        for turn in (1, 2):
            score = float(rng.randint(1, 10))
            j = {"turn": turn, "judge": ["openai:gpt-4", "single-v1"], "user_prompt": "u"}
            judgments.append({**j, "judgment": f"[[{score:g}]]", "score": score, "error": None})
        if qid == 90:
            judgments[1].update(judgment="no rating", score=-1.0)
        if qid == 91:  # FastChat writes a failed call as $ERROR$, score -1; turn 1 is kept
            judgments[1].update(judgment="$ERROR$", score=-1.0, error="HTTP 500")
        out.append(
            {
                "id": str(qid),
                "question_id": qid,
                "category": cats[qid % len(cats)],
                "prompt_turns": ["q1", "q2"],
                "turns": [f"a{qid}", f"b{qid}"],
                "calls": [],
                "judgments": judgments,
                "judge_calls": [],
                "latency_s": 1.0,
                "error": "judge: HTTP 500" if qid == 91 else None,
                "tstamp": 1.0,
            }
        )
    return out


def _show_result(path: Path) -> dict[str, dict[str, float]]:
    """FastChat's ``display_result_single`` on ``path``; the frames it prints, as dicts."""
    from fastchat.llm_judge import show_result

    printed: list[Any] = []
    show_result.print = lambda *a, **k: printed.extend(a)  # type: ignore[attr-defined]
    try:
        args = type("Args", (), {"input_file": str(path), "model_list": None})()
        args.bench_name, args.judge_model = "mt_bench", "gpt-4"
        show_result.display_result_single(args)
    finally:
        del show_result.print  # type: ignore[attr-defined]
    first, second, average = [p for p in printed if hasattr(p, "to_dict")]
    return {
        "turn_1": {m: s for (m, _), s in first["score"].items()},
        "turn_2": {m: s for (m, _), s in second["score"].items()},
        "score": dict(average["score"].items()),
    }


def test_fastchat_show_result_on_our_export_equals_our_summary_and_merges(tmp_path) -> None:
    folder = tmp_path / "data" / "mt_bench"
    (folder / "model_judgment").mkdir(parents=True)
    (folder / "model_answer").mkdir()
    # another model's answers and judgments are already there (FastChat's own format)
    other = _mt_bench_records(1)
    theirs = [
        {**{k: r[k] for k in ("question_id",)}, "model": "vicuna", "judge": ["gpt-4", "single-v1"]}
        | {"user_prompt": "u", "judgment": j["judgment"], "score": j["score"], "turn": j["turn"]}
        | {"tstamp": 1.0}
        for r in other
        for j in r["judgments"]
    ]
    judged = folder / "model_judgment" / "gpt-4_single.jsonl"
    judged.write_text("".join(json.dumps(t) + "\n" for t in theirs))
    (folder / "model_answer" / "vicuna.jsonl").write_text('{"question_id": 81}\n')

    header = {"eval": "mt-bench", "spec_name": "moa", "judge": "openai:gpt-4"}
    header |= {"generation": "fastchat", "questions_total": 80}
    results = _write(folder / "moa.jsonl", header, _mt_bench_records(2))
    for _ in range(2):  # exporting twice replaces our lines, never duplicates them
        path, notes = export(results, "fastchat")
    assert path == folder / "model_answer" / "moa.jsonl"
    assert not any("partial" in n for n in notes)
    lines = [json.loads(x) for x in judged.read_text().splitlines()]
    assert sum(x["model"] == "vicuna" for x in lines) == 160  # theirs kept
    assert sum(x["model"] == "moa" for x in lines) == 160
    assert {tuple(x["judge"]) for x in lines} == {("gpt-4", "single-v1")}
    q91 = {x["turn"]: x["score"] for x in lines if x["model"] == "moa" and x["question_id"] == 91}
    assert q91[1] > 0 and q91[2] == -1.0  # the failed turn is -1, turn 1 kept
    error = [x for x in lines if x["model"] == "moa" and x["judgment"] == "$ERROR$"]
    assert [(x["question_id"], x["turn"], x["score"]) for x in error] == [(91, 2, -1.0)]
    assert (folder / "model_answer" / "vicuna.jsonl").exists()

    official = _show_result(judged)
    header_, records, journal = read_all(results)
    ours = summary.summarize(header_, records, journal)
    assert official["turn_1"]["moa"] == pytest.approx(ours["turn_1"], abs=1e-9)
    assert official["turn_2"]["moa"] == pytest.approx(ours["turn_2"], abs=1e-9)
    assert official["score"]["moa"] == pytest.approx(ours["score"], abs=1e-9)
    assert ours["judge_failures"] == 1 and ours["unparsable"] == 1 and ours["questions"] == 80
    assert not ours["leaderboard_comparable"]  # a judge call failed: rerun to retry it

    # a partial export says it cannot be re-judged by FastChat's gen_judgment
    partial = _write(tmp_path / "p.jsonl", header, _mt_bench_records(3)[:5])
    _, notes = export(partial, "fastchat", tmp_path / "p" / "model_answer" / "moa.jsonl")
    assert any("partial export: 5 of 80 answers" in n for n in notes)


def _gamed_csv(path: Path, seed: int = 5) -> str:
    """A stand-in for AlpacaEval's df_gamed.csv (its columns; made-up numbers): the real
    file is on the Hugging Face hub, which tests cannot reach."""
    rng = random.Random(seed)
    difficulty = [rng.gauss(0, 1) for _ in range(805)]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "index", "preference", "std_delta_len", "instruction_difficulty"])
        for model in ("gpt4_gamed_verbose", "gpt4_gamed_concise"):
            for i in range(805):
                pref = min(1.0, max(0.0, 0.5 + 0.4 * math.tanh(difficulty[i]) + rng.gauss(0, 0.2)))
                w.writerow([model, i, round(pref, 4), rng.gauss(0, 1), difficulty[i]])
    # not_gamed_baseline as pandas writes a bool column
    rows = list(csv.reader(path.open()))
    rows[0].append("not_gamed_baseline")
    for r in rows[1:]:
        r.append("False")
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return str(path)


def _pairwise_records(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        base, mine = rng.randint(100, 1500), rng.randint(100, 2600)
        p = 1 / (1 + math.exp(-(0.2 + 1.3 * math.tanh((mine - base) / 600))))
        u = rng.random()
        winner = "model" if u < 0.85 * p else "tie" if u < p else "baseline"
        out.append(
            {
                "id": f"k{i}",
                "instruction": f"instruction {i}",
                "output": "m" * mine,
                "baseline_output": "b" * base,
                "winner": winner,
                "index": i,
                "calls": [],
                "baseline_calls": [],
                "judge_calls": [],
                "error": None,
            }
        )
    return out


@pytest.mark.slow
@pytest.mark.parametrize("n", [30, 100, 805])
@pytest.mark.parametrize("glm", ["length_controlled_v1", "length_controlled_minimal"])
def test_alpaca_evals_lc_on_our_exported_annotations_equals_ours(tmp_path, n, glm) -> None:
    length_control._pkg_resources_shim()  # alpaca_eval 0.6.6 imports it; setuptools 81 dropped it
    from alpaca_eval.metrics.glm_winrate import get_length_controlled_winrate

    gamed = _gamed_csv(tmp_path / "df_gamed.csv") if glm.endswith("v1") else None
    header = {"eval": "pairwise", "spec_name": "moa", "judge": "openai:gpt-4o"}
    header |= {"baseline": "gpt4_turbo", "alpaca_eval_gamed": gamed}
    results = _write(tmp_path / "pw.jsonl", header, _pairwise_records(n, seed=n))
    path, notes = export(results, "alpaca_eval")
    annotations = json.loads((tmp_path / "pw.annotations.json").read_text())
    assert len(annotations) == n and any("annotations" in x for x in notes)
    assert {a["generator_1"] for a in annotations} == {"gpt4_turbo"}
    assert {a["generator_2"] for a in annotations} == {"moa"}
    assert {a["annotator"] for a in annotations} == {"gpt-4o_pair-v2_both_orders"}
    assert {a["preference"] for a in annotations} <= {1.0, 1.5, 2.0}
    assert [o["generator"] for o in json.loads(path.read_text())] == ["moa"] * n

    # alpaca_eval's own function on the exported file (its df_gamed download pointed here)
    import pandas as pd
    from alpaca_eval.metrics import glm_winrate

    stub = _gamed_csv(tmp_path / "stub.csv") if gamed is None else gamed
    original = glm_winrate.hf_hub_download
    glm_winrate.hf_hub_download = lambda *a, **k: stub
    try:
        official = get_length_controlled_winrate(
            pd.DataFrame(annotations), glm_name=glm, save_weights_dir=None
        )["length_controlled_winrate"]
    finally:
        glm_winrate.hf_hub_download = original

    header_, records, journal = read_all(results)
    s = summary.summarize(header_, records, journal)
    assert s["lc_variant"].startswith(f"{glm}, alpaca_eval 0.6.6")
    assert s["lc_win_rate"] == pytest.approx(official, abs=1e-6)
    ours = length_control.lc_win_rate(annotations, gamed, prefer_official=False)
    assert ours["variant"].startswith(f"{glm}, langgraph_moa")
    assert ours["lc_win_rate"] == pytest.approx(official, abs=0.5)
    # the leaderboard row, in AlpacaEval's columns, merged into an existing leaderboard
    board = list(csv.DictReader((tmp_path / "pw.leaderboard.csv").open()))
    assert [r[""] for r in board] == ["moa"]
    assert float(board[0]["length_controlled_winrate"]) == pytest.approx(official, abs=1e-6)
    assert int(board[0]["n_total"]) == n


TRICKY = [
    "####18",
    "#### $18",
    "####\n18",
    "#### 18",
    "18.00",
    "The answer is 18.0",
    "1,000",
    "#### 1,000",
    "#### 1000.",
    "It is 18.",
    "It is $18.",
    "-18",
    "#### -18",
    "no number",
    "",
    "Step 1: 3 + 4 = 7. #### 18\nQuestion:",
    "5 apples, 13 pears: 18",
    "The answer is 18.",
    "The answer is $18.",
    "#### 18\n#### 19",
    "18,",
]
REFERENCES = ["Half of 36 is 18.\n#### 18", "Total 1000.\n#### 1,000", "#### -18"]


@pytest.mark.parametrize("task", ["gsm8k", "gsm8k_cot"])
def test_lm_evals_filters_and_exact_match_give_our_gsm8k_grades(task) -> None:
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter
    from lm_eval.filters.selection import TakeFirstFilter

    ignore = {
        "ignore_case": True,
        "ignore_punctuation": False,
        "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"],
    }
    strict = [RegexFilter(regex_pattern=TASKS[task]["strict"]), TakeFirstFilter()]
    flexible = [RegexFilter(regex_pattern=FLEXIBLE, group_select=-1), TakeFirstFilter()]

    def official(chain: list[Any], response: str, reference: str) -> bool:
        resps: Any = [[response]]
        for f in chain:
            resps = f.apply(resps, [{}])
        (filtered,) = list(resps)
        gold = reference.split("####")[-1].strip() if task == "gsm8k_cot" else reference
        return bool(exact_match_hf_evaluate([filtered], [gold], **ignore)["exact_match"])

    checked = 0
    for reference in REFERENCES:
        for output in TRICKY:
            ours = grade(output, reference, task)
            assert ours["strict_correct"] == official(strict, output, reference), output
            assert ours["flexible_correct"] == official(flexible, output, reference), output
            checked += 1
    assert checked == len(TRICKY) * len(REFERENCES)
    # the cases the issue names: lm-eval is stricter than a numeric comparison
    assert not grade("####18", REFERENCES[0])["strict_correct"]
    assert not grade("#### $18", REFERENCES[0])["strict_correct"]
    assert not grade("18.00", REFERENCES[0])["flexible_correct"]
    assert grade("1,000", REFERENCES[1])["flexible_correct"]


@pytest.mark.parametrize("task", ["gsm8k", "gsm8k_cot"])
def test_our_gsm8k_prompts_are_lm_evals_fewshot_context(tmp_path, task, monkeypatch) -> None:
    """lm-eval's own task (its YAML, its sampler seeded as ``lm_eval`` seeds it) built on
    local JSONL files renders the same messages as ours, for every test question in order,
    as multi-turn chat (its default with --apply_chat_template) and as one message."""
    import importlib.resources

    import yaml
    from lm_eval.api.task import ConfigurableTask

    from langgraph_moa.eval.gsm8k import prompts

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    train = [
        {"question": f"Q{i}: {i}+1?", "answer": f"{i}+1={i + 1}\n#### {i + 1}"} for i in range(40)
    ]
    test = [{"question": f"What is {i}*2?", "answer": f"{i}*2=\n#### {2 * i}"} for i in range(7)]
    for name, rows in (("train", train), ("test", test)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    folder = importlib.resources.files("lm_eval").joinpath("tasks").joinpath("gsm8k")
    config = yaml.safe_load(folder.joinpath(f"{task.replace('_', '-')}.yaml").read_text())
    config.pop("dataset_name")
    config["dataset_path"] = "json"
    files = {"test": str(tmp_path / "test.jsonl")}
    if task == "gsm8k":
        files["train"] = str(tmp_path / "train.jsonl")
    config["dataset_kwargs"] = {"data_files": files, "cache_dir": str(tmp_path / "cache")}
    lm_task = ConfigurableTask(config=config)

    def render(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return json.dumps(messages)

    for multiturn in (True, False):
        lm_task.set_fewshot_seed(1234)  # lm_eval's default --fewshot_random_seed
        theirs = [
            json.loads(
                lm_task.fewshot_context(
                    doc,
                    lm_task.config.num_fewshot,
                    apply_chat_template=True,
                    fewshot_as_multiturn=multiturn,
                    chat_template=render,
                )
            )
            for doc in lm_task.test_docs()
        ]
        ours = prompts(task, test, train, single_turn=not multiturn)
        assert [[(m["role"], m["content"]) for m in conv] for conv in theirs] == ours
