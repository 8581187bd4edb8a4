"""``moa eval ...``: the evaluation commands (argument parsing and wiring only; the logic
lives in the modules next to this one). ``langgraph_moa.cli`` adds the ``eval`` subparser
with ``add_parser`` and dispatches to ``main``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from langgraph_moa.errors import MoAError
from langgraph_moa.eval import data, summary
from langgraph_moa.eval.export import FORMATS, export
from langgraph_moa.eval.store import ResultStore, read_all


def add_parser(sub: Any) -> None:
    """Register ``moa eval`` and its commands on the main CLI's subparsers."""
    ev = sub.add_parser("eval", help="evaluate a spec: MT-Bench, pairwise, GSM8K; compare runs")
    cmds = ev.add_subparsers(dest="eval_command", required=True)

    mt = cmds.add_parser("mt-bench", help="MT-Bench, FastChat single-answer grading")
    _run_args(mt, judge=True)
    pick = mt.add_mutually_exclusive_group()
    pick.add_argument("--questions", type=int, help="only the first N questions")
    pick.add_argument("--question-ids", type=int, nargs="+", help="only these question ids")
    mt.add_argument("--question-file", help="MT-Bench-format questions (default: shipped 80)")
    mt.add_argument(
        "--generation",
        choices=("fastchat", "spec"),
        default="fastchat",
        help="fastchat (default): FastChat's protocol, per-category temperature and 1024 new"
        " tokens for every model (leaderboard-comparable); spec: the spec's own settings",
    )

    pw = cmds.add_parser("pairwise", help="AlpacaEval-style preference over a baseline")
    _run_args(pw, judge=True)
    base = pw.add_mutually_exclusive_group(required=True)
    base.add_argument("--baseline", help="baseline preset (or spec file) answering the prompts")
    base.add_argument("--baseline-file", help="AlpacaEval-format reference outputs (JSON)")
    pw.add_argument("--prompts", required=True, help="prompts: JSON/JSONL (instruction) or text")
    pw.add_argument("--limit", type=int, help="only the first N prompts")
    pw.add_argument(
        "--alpaca-eval-gamed",
        metavar="DF_GAMED_CSV",
        help="AlpacaEval's df_gamed.csv (HF dataset tatsu-lab/alpaca_eval): the LC win rate"
        " is then length_controlled_v1 (needs --prompts = AlpacaEval's 805, in order)",
    )

    gs = cmds.add_parser("gsm8k", help="GSM8K accuracy as lm-evaluation-harness scores it")
    _run_args(gs, judge=False)
    gs.add_argument(
        "--data", required=True, help="GSM8K test split JSONL (question, answer '... #### N')"
    )
    gs.add_argument("--train", help="GSM8K train split JSONL: the 5-shot examples (gsm8k)")
    gs.add_argument(
        "--task",
        choices=("gsm8k", "gsm8k_cot"),
        default="gsm8k",
        help="lm-eval task: gsm8k (5-shot from --train) or gsm8k_cot (8 fixed CoT exemplars)",
    )
    gs.add_argument(
        "--fewshot-single-turn",
        action="store_true",
        help="the examples and the question in one user message (lm-eval's"
        " --fewshot_as_multiturn false); default: one user/assistant turn per example",
    )
    gs.add_argument("--limit", type=int, help="only the first N problems")

    cmp = cmds.add_parser("compare", help="table and score-vs-cost PNG across result files")
    cmp.add_argument("results", nargs="+", help="result JSONL files")
    cmp.add_argument("--plot", default="moa-eval/compare.png", help="PNG path")

    ex = cmds.add_parser("export", help="export a result file for the official tools")
    ex.add_argument("results", help="result JSONL file")
    ex.add_argument("--format", required=True, choices=FORMATS)
    ex.add_argument("--out", help="output path (default: next to the results)")


def _run_args(p: argparse.ArgumentParser, *, judge: bool) -> None:
    p.add_argument("--preset", help="built-in preset (default: local)")
    p.add_argument("--spec", help="spec file (YAML or JSON)")
    if judge:
        p.add_argument(
            "--judge",
            required=True,
            help="judge model: provider:model (openai:gpt-4o, local:smollm2) or a ModelSpec file",
        )
        p.add_argument("--judge-base-url", help="OpenAI-compatible endpoint of the judge")
        p.add_argument(
            "--judge-max-tokens",
            type=int,
            help="judge max_tokens (default as FastChat: 2048, 1024 for Anthropic judges)",
        )
    p.add_argument("--concurrency", type=int, default=4, help="items in flight (default 4)")
    p.add_argument("--output", help="result JSONL (default moa-eval/<eval>-<spec>.jsonl)")
    p.add_argument("--export", choices=FORMATS, action="append", help="also export results")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _spec(args: argparse.Namespace, preset_or_path: str | None = None) -> Any:
    from langgraph_moa.graphs.spec import resolve_spec

    if preset_or_path is not None:  # --baseline: a preset name or a spec file
        if Path(preset_or_path).is_file():
            return resolve_spec(preset_or_path)
        return resolve_spec(None, preset=preset_or_path)
    if args.spec and args.preset:
        raise MoAError("give --spec or --preset, not both")
    return resolve_spec(args.spec, preset=None if args.spec else (args.preset or "local"))


def _dump(spec: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = spec.model_dump(mode="json")
    return dumped


async def _mt_bench(args: argparse.Namespace) -> Path:
    from langgraph_moa.cache import graph_cache  # `cache: true` persists (issue 15)
    from langgraph_moa.eval.judge import Judge, judge_spec
    from langgraph_moa.eval.mt_bench import run_question
    from langgraph_moa.graphs.builder import create_moa

    spec = _spec(args)
    questions = data.mt_bench_questions(args.question_file)
    references = data.mt_bench_references()
    prompts = data.judge_prompts()
    data_id = [questions, references, prompts]  # the whole set: a larger selection resumes
    if args.question_ids:
        known = {q["question_id"] for q in questions}
        if missing := sorted(set(args.question_ids) - known):
            raise MoAError(f"--question-ids: unknown question ids {missing}")
        questions = [q for q in questions if q["question_id"] in set(args.question_ids)]
    elif args.questions is not None:
        if args.questions < 1:
            raise MoAError("--questions must be at least 1")
        questions = questions[: args.questions]
    jspec = judge_spec(args.judge, base_url=args.judge_base_url, max_tokens=args.judge_max_tokens)
    spec.check_keys()
    settings = {"generation": args.generation}
    store = _store(
        args,
        "mt-bench",
        spec,
        jspec,
        data_id=data_id,
        settings=settings,
        extra={
            **settings,
            "question_file": args.question_file,
            "questions_total": len(data.mt_bench_questions(args.question_file)),
        },
    )
    graph, judge = create_moa(spec, cache=graph_cache(spec)), Judge(jspec)

    async def work(q: dict[str, Any]) -> dict[str, Any]:
        key = str(q["question_id"])
        previous = store.records.get(key)
        return await run_question(
            graph,
            judge,
            q,
            prompts,
            references,
            previous,
            args.generation,
            journal=lambda calls: store.journal(key, calls),
        )

    await _go(args, store, questions, lambda q: str(q["question_id"]), work)
    return store.path


async def _pairwise(args: argparse.Namespace) -> Path:
    from langgraph_moa.cache import graph_cache  # `cache: true` persists (issue 15)
    from langgraph_moa.eval.answer import moa_answer
    from langgraph_moa.eval.judge import Judge, judge_spec
    from langgraph_moa.eval.pairwise import run_prompt
    from langgraph_moa.graphs.builder import create_moa

    spec = _spec(args)
    every_prompt = data.instructions(args.prompts)
    prompts = every_prompt[: args.limit]
    jspec = judge_spec(args.judge, base_url=args.judge_base_url, max_tokens=args.judge_max_tokens)
    spec.check_keys()
    graph = create_moa(spec, cache=graph_cache(spec))

    def journal(text: str) -> Any:
        return lambda calls: store.journal(data.fingerprint(text), calls)

    async def mine(text: str) -> dict[str, Any]:
        return await moa_answer(graph, [("user", text)], journal=journal(text))

    if args.baseline_file:
        outputs, generator = data.alpaca_outputs(args.baseline_file)
        if missing := [p for p in prompts if p not in outputs]:
            raise MoAError(
                f"--baseline-file has no output for {len(missing)} prompt(s), e.g."
                f" {missing[0][:80]!r}"
            )
        baseline_id: Any = {"file": generator, "outputs": outputs}
        baseline_name = generator

        async def base(text: str) -> dict[str, Any]:
            return {"answer": outputs[text], "calls": [], "latency_s": None, "error": None}
    else:
        bspec = _spec(args, args.baseline)
        bspec.check_keys()
        baseline_id, baseline_name = _answers_depend_on(_dump(bspec)), bspec.name
        bgraph = create_moa(bspec, cache=graph_cache(bspec))

        async def base(text: str) -> dict[str, Any]:
            return await moa_answer(bgraph, [("user", text)], journal=journal(text))

    template = data.judge_prompts()["pair-v2"]
    gamed = None
    if args.alpaca_eval_gamed:
        from langgraph_moa.eval.length_control import read_gamed

        gamed = str(Path(args.alpaca_eval_gamed).resolve())
        try:
            known = read_gamed(gamed)["difficulty"]
        except (OSError, KeyError, ValueError) as exc:
            raise MoAError(f"--alpaca-eval-gamed: not AlpacaEval's df_gamed.csv ({exc})") from None
        if len(every_prompt) > len(known):
            raise MoAError(
                f"--alpaca-eval-gamed: {len(every_prompt)} prompts, but df_gamed.csv knows"
                f" {len(known)}: the prompts must be AlpacaEval's, in order"
            )
    position = {p: i for i, p in enumerate(every_prompt)}
    store = _store(
        args,
        "pairwise",
        spec,
        jspec,
        data_id=[every_prompt, template],
        settings=baseline_id,
        baseline=baseline_name,
        extra={"alpaca_eval_gamed": gamed},
    )
    judge = Judge(jspec)

    async def work(text: str) -> dict[str, Any]:
        previous = store.records.get(data.fingerprint(text))
        record = await run_prompt(text, mine, base, judge, template, previous, journal(text))
        return {**record, "index": position[text]}

    await _go(args, store, prompts, lambda p: data.fingerprint(p), work)
    return store.path


async def _gsm8k(args: argparse.Namespace) -> Path:
    from langgraph_moa.cache import graph_cache  # `cache: true` persists (issue 15)
    from langgraph_moa.eval.gsm8k import prompts, run_problem
    from langgraph_moa.graphs.builder import create_moa

    spec = _spec(args)
    every_row = data.gsm8k(args.data)
    if args.task == "gsm8k" and not args.train:
        raise MoAError("--train: gsm8k draws its 5-shot examples from the train split")
    train = data.gsm8k(args.train) if args.task == "gsm8k" else None
    every_prompt = prompts(args.task, every_row, train, args.fewshot_single_turn)
    prompt_of = {
        data.fingerprint(r["question"]): p for r, p in zip(every_row, every_prompt, strict=True)
    }
    rows = every_row[: args.limit]
    spec.check_keys()
    store = _store(
        args,
        "gsm8k",
        spec,
        None,
        data_id=[every_row, every_prompt],
        settings={"task": args.task, "single_turn": args.fewshot_single_turn},
        extra={"task": args.task, "fewshot_single_turn": args.fewshot_single_turn},
    )
    graph = create_moa(spec, cache=graph_cache(spec))

    async def work(row: dict[str, Any]) -> dict[str, Any]:
        key = data.fingerprint(row["question"])
        return await run_problem(
            graph,
            row,
            prompt_of[key],
            args.task,
            journal=lambda calls: store.journal(key, calls),
        )

    await _go(args, store, rows, lambda r: data.fingerprint(r["question"]), work)
    return store.path


OPERATIONAL = frozenset({"timeout", "retry", "price"})
"""ModelSpec fields that change how a call is made or billed, not what it answers: a resumed
eval may raise a timeout or add a price without being refused as a different spec."""


def _answers_depend_on(dump: Any) -> Any:
    """``dump`` without the operational fields of any ModelSpec inside it."""
    if isinstance(dump, dict):
        return {k: _answers_depend_on(v) for k, v in dump.items() if k not in OPERATIONAL}
    if isinstance(dump, list):
        return [_answers_depend_on(v) for v in dump]
    return dump


def _store(
    args: argparse.Namespace,
    kind: str,
    spec: Any,
    jspec: Any,
    data_id: Any,
    settings: Any = None,
    baseline: str | None = None,
    extra: dict[str, Any] | None = None,
) -> ResultStore:
    judge_dump = jspec.model_dump(mode="json", exclude={"name"}) if jspec else None
    header = {
        "eval": kind,
        "spec_name": spec.name,
        "spec": _dump(spec),
        "judge": jspec.model if jspec else None,
        "judge_spec": judge_dump,
        "baseline": baseline,
        **(extra or {}),
        "fingerprints": {
            "eval": kind,
            "spec": data.fingerprint(_answers_depend_on(_dump(spec))),
            "judge": data.fingerprint(_answers_depend_on(judge_dump)),
            "data": data.fingerprint(data_id),
            "settings": data.fingerprint(settings),
        },
    }
    path = args.output or f"moa-eval/{kind}-{spec.name}.jsonl"
    return ResultStore(path, header)


async def _go(
    args: argparse.Namespace, store: ResultStore, items: Any, key: Any, work: Any
) -> None:
    from langgraph_moa.eval.runner import run_items
    from langgraph_moa.models.factory import aclose_clients

    try:
        await run_items(
            items,
            key,
            work,
            store,
            concurrency=args.concurrency,
            desc=store.header["eval"],
            progress=not args.quiet,
        )
    finally:
        await aclose_clients()


def report(path: Path) -> dict[str, Any]:
    """Summarise a result file, print the summary and save it next to the file."""
    header, records, journal = read_all(path)
    result = summary.summarize(header, records, journal)
    text = summary.render(result)
    print(text)
    path.with_suffix(".summary.txt").write_text(text + "\n", encoding="utf-8")
    path.with_suffix(".summary.json").write_text(
        json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print(f"\nresults: {path}\nsummary: {path.with_suffix('.summary.txt')}", file=sys.stderr)
    return result


def main(args: argparse.Namespace) -> int:
    cmd = args.eval_command
    if cmd == "compare":
        from langgraph_moa.eval import compare

        summaries = compare.load(args.results)
        print(compare.render(summaries))
        print(f"\nplot: {compare.plot(summaries, args.plot)}", file=sys.stderr)
        return 0
    if cmd == "export":
        path, notes = export(args.results, args.format, args.out)
        print(path)
        for note in notes:
            print(note, file=sys.stderr)
        return 0
    if args.concurrency < 1:
        raise MoAError("--concurrency must be at least 1")
    if getattr(args, "limit", None) is not None and args.limit < 1:
        raise MoAError("--limit must be at least 1")
    runner = {"mt-bench": _mt_bench, "pairwise": _pairwise, "gsm8k": _gsm8k}[cmd]
    path = asyncio.run(runner(args))
    result = report(path)
    for fmt in args.export or []:
        written, notes = export(path, fmt)
        print(f"exported {fmt}: {written}", file=sys.stderr)
        for note in notes:
            print(f"  {note}", file=sys.stderr)
    return 0 if result["completed"] else 1
