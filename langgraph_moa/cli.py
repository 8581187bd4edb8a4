"""``moa``: ask a Mixture-of-Agents a question from the shell.

A thin face over the same compiled graph: progress comes from ``stream_mode="custom"``,
streamed answer tokens from ``stream_mode="messages"``, the result from ``values``.
Errors print one line on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from langgraph_moa.costs import run_totals
from langgraph_moa.errors import MoAError

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph.types import StreamMode

    from langgraph_moa.graphs.spec import MoASpec
from langgraph_moa.graphs.names import ANSWER_NODES
from langgraph_moa.redact import scrub

EVAL_EXTRA = frozenset({"numpy", "tqdm", "matplotlib", "sklearn"})
"""What ``moa eval`` needs beyond the core (``pip install "langgraph-moa[eval]"``)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moa",
        description="Mixture-of-Agents on LangGraph. `moa QUESTION` runs the embedded local "
        "preset offline; `moa presets` lists presets; `moa graph` prints the Mermaid diagram.",
    )
    p.add_argument("--version", "-V", action="version", version=f"%(prog)s {version()}")
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="answer a question (the default command)")
    run.add_argument("question", nargs="*", help="the question (omit with --thread to resume)")
    _spec_args(run)
    run.add_argument("--stream", action="store_true", help="print answer tokens as they come")
    run.add_argument("--json", action="store_true", help="print answer, references, usage as JSON")
    run.add_argument("--show-references", action="store_true", help="print what the aggregator saw")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    run.add_argument("--thread", help="keep the conversation in a local SQLite thread (resumable)")
    run.add_argument("--db", default=None, help="SQLite file for --thread (default: user data dir)")
    run.add_argument("--temperature", type=float, help="override every model's temperature")
    run.add_argument("--max-tokens", type=int, help="override every model's max_tokens")
    # -- beyond the paper (issue 15) --
    run.add_argument("--max-cost", type=float, help="USD this run may spend (stops before more)")
    run.add_argument(
        "--cache", action="store_true", help="reuse answers across runs (persistent SQLite cache)"
    )
    cache = sub.add_parser("cache", help="the persistent answer cache: clear it or show where")
    cache.add_argument("action", choices=["clear", "path"], help="clear: delete every answer")
    est = sub.add_parser("estimate", help="worst-case calls, tokens and cost of a spec")
    est.add_argument("question", nargs="*", help="the question (default: a 200-token one)")
    _spec_args(est)
    est.add_argument("--max-tokens", type=int, help="override every model's max_tokens")
    est.add_argument("--json", action="store_true", help="print the estimate as JSON")
    sub.add_parser("presets", help="list the built-in presets")
    graph = sub.add_parser("graph", help="print the graph as a Mermaid diagram")
    _spec_args(graph)
    from langgraph_moa.eval.cli import add_parser as add_eval

    add_eval(sub)
    from langgraph_moa.serve import add_parser as add_serve, add_transport_args

    add_serve(sub)
    ui = sub.add_parser("ui", help="open the web UI in the browser (serving it if needed)")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=8765)
    ui.add_argument("--spec", action="append", help="offer this spec file too (repeatable)")
    ui.add_argument("--db", default=None, help="SQLite file of the page's conversations")
    ui.add_argument("--no-browser", action="store_true", help="serve without opening a browser")
    add_transport_args(ui)
    return p


def version() -> str:
    """The installed distribution's version: ``version`` in pyproject.toml is its one source."""
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("langgraph-moa")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="built-in preset (default: local)")
    p.add_argument("--spec", help="spec file (YAML or JSON)")


def _spec(args: argparse.Namespace) -> MoASpec:
    from langgraph_moa.graphs.spec import resolve_spec

    if args.spec and args.preset:
        raise MoAError("give --spec or --preset, not both")
    return resolve_spec(args.spec, preset=None if args.spec else (args.preset or "local"))


class Progress:
    """Live per-proposer progress on stderr from the graph's custom stream events."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        kind = event.get("event")
        who = f"  {event.get('node', '')} [{event.get('model', '')}]"
        if kind == "layer_started":
            line = f"layer {event['layer']}: {', '.join(map(str, event['models']))}"
        elif kind == "call_started":
            line = f"{who} running" + (
                f" (attempt {event['attempt']})" if event.get("attempt", 1) > 1 else ""
            )
        elif kind == "call_finished":
            line = (
                f"{who} done in {event['latency_s']:.2f}s"
                f" ({event['input_tokens']} in / {event['output_tokens']} out tokens)"
            )
        elif kind == "call_error":
            line = f"{who} error: {event['error']}" + (
                "; retrying" if event.get("will_retry") else ""
            )
        elif kind == "call_failed":
            line = f"{who} FAILED: {event['error']}"
        elif kind == "call_cut":
            line = f"{who} cut: the layer went on without it"
        elif kind == "call_fallback":
            line = f"{who} answered by fallback {event['model']} (for {event['replaces']})"
        elif kind == "layer_finished":
            line = f"layer {event['layer']}: {event['answers']}/{event['of']} answers"
        elif kind == "layer_ranked":
            failed = f" ({event['failed']} of {event['rankers']} rankers failed)"
            line = f"layer {event['layer']} ranked: kept {', '.join(event['kept'])}" + (
                failed if event["failed"] else ""
            )
        elif kind == "layer_stop_check" and event.get("stop"):
            line = f"layer {event['layer']}: stopping early ({event['reason']})"
        else:
            return
        print(line, file=sys.stderr, flush=True)


def _db_path(args: argparse.Namespace) -> Path:
    if args.db:
        return Path(args.db)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "langgraph-moa" / "threads.sqlite"


async def _run(args: argparse.Namespace) -> int:
    from contextlib import AsyncExitStack

    from langgraph.types import Command

    from langgraph_moa.graphs.builder import build_graph
    from langgraph_moa.graphs.state import Context
    from langgraph_moa.models.factory import aclose_clients

    spec = _spec(args)
    if args.cache:
        spec = spec.model_copy(update={"cache": True})
    question = " ".join(args.question).strip()
    if not question and not args.thread:
        raise MoAError('ask a question, e.g. moa "What is Mixture-of-Agents?"')
    spec.check_keys()
    async with AsyncExitStack() as stack:
        checkpointer = None
        config: RunnableConfig = {}
        if args.thread:
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            path = _db_path(args)
            path.parent.mkdir(parents=True, exist_ok=True)
            checkpointer = await stack.enter_async_context(
                AsyncSqliteSaver.from_conn_string(str(path))
            )
            config = {"configurable": {"thread_id": args.thread}}
        from langgraph_moa.cache import graph_cache

        cache = graph_cache(spec)  # `cache: true` or --cache: answers survive between runs
        graph = build_graph(spec).compile(checkpointer=checkpointer, cache=cache, name=spec.name)
        cached: set[str] = set()  # nodes whose answer came from the cache
        if question:
            payload: Any = {"messages": [("user", question)]}
        else:
            state = await graph.aget_state(config)
            if not state.next:
                raise MoAError(f"thread {args.thread!r} has no unfinished run: ask a question")
            # A review pause is approved as is; a crashed run simply continues.
            paused = any(task.interrupts for task in state.tasks)
            payload = Command(resume=True) if paused else None
            print(f"resuming thread {args.thread} at {', '.join(state.next)}", file=sys.stderr)
        context = Context(
            temperature=args.temperature, max_tokens=args.max_tokens, max_cost=args.max_cost
        )
        progress = Progress(not args.quiet and not args.json)
        final: dict[str, Any] = {}
        streamed: str | None = None  # id of the answer message being printed
        # Ask only for what is shown: tokens with --stream, progress events unless quiet.
        # A stream nobody reads makes every model call a plain, non-streaming request.
        stream_answer = args.stream and not args.json
        modes: list[StreamMode] = ["values"]
        modes += ["custom"] if progress.enabled else []
        modes += ["messages"] if stream_answer else []
        modes += ["updates"] if cache is not None else []  # says which answers were cached
        try:
            async for part in graph.astream(payload, config, context=context, stream_mode=modes):
                mode, chunk = cast("tuple[str, Any]", part)  # (mode, chunk) for a list of modes
                if mode == "custom":
                    progress(chunk)
                elif mode == "messages":
                    token, meta = chunk
                    if meta.get("langgraph_node") in ANSWER_NODES and token.text:
                        if streamed is None:
                            print(file=sys.stderr)
                        elif token.id != streamed:  # the stream broke; a retry starts over
                            print(flush=True)
                            print("[answer stream restarted after an error]", file=sys.stderr)
                        streamed = token.id
                        print(token.text, end="", flush=True)
                elif mode == "values":
                    final = chunk
                elif mode == "updates" and (chunk.get("__metadata__") or {}).get("cached"):
                    cached.update(k for k in chunk if k != "__metadata__")
        finally:
            await aclose_clients()
    if "__interrupt__" in final or not final.get("answer"):
        if args.thread:
            raise MoAError(f"the run paused; resume it with: moa run --thread {args.thread}")
        raise MoAError("the run ended without an answer")
    for call in final.get("calls", []):
        if call["node"] in cached:
            call["cached"] = True
    _print_result(final, args, streamed is not None)
    return 0


def _print_result(final: dict[str, Any], args: argparse.Namespace, streamed: bool) -> None:
    calls = final.get("calls", [])
    if args.json:
        out = {k: final.get(k) for k in ("answer", "references", "answers", "calls")}
        # beyond the paper (issue 15): rank-then-fuse and early stopping, when they ran
        out.update({k: final[k] for k in ("rankings", "stop_checks", "early_stop") if final.get(k)})
        out["totals"] = run_totals(calls)
        if final.get("fallback_reason"):
            out["fallback_reason"] = final["fallback_reason"]
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return
    if args.show_references:
        for i, ref in enumerate(final.get("references", []), 1):
            print(f"--- reference {i}\n{ref}", file=sys.stderr)
        print("--- answer", file=sys.stderr)
    if streamed:
        print()
    else:
        print(final["answer"])
    if not args.quiet:
        t = run_totals(calls)
        print(
            f"[{t['calls']} calls"
            + (f" ({t['cached']} from the cache)" if t["cached"] else "")
            + f", {t['failed']} failed, {t['cut']} cut,"
            f" {t['input_tokens']} in / {t['output_tokens']} out tokens]",
            file=sys.stderr,
        )
        if final.get("fallback_reason"):
            print(f"[fallback answered: {final['fallback_reason']}]", file=sys.stderr)
        from langgraph_moa.graphs.state import answer_message, finish_reason

        if finish_reason(answer_message(final)) == "length":
            print("[the answer was cut at max_tokens: --max-tokens N allows more]", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "run",
        "presets",
        "graph",
        "eval",
        "ui",
        "serve",
        "estimate",
        "cache",
        "-h",
        "--help",
        "-V",
        "--version",
    }
    if argv and argv[0] not in commands:
        argv.insert(0, "run")
    args = _parser().parse_args(argv)
    try:
        if args.command == "presets":
            from langgraph_moa.graphs.spec import preset_description, preset_names

            for name in preset_names():
                print(f"{name:10} {preset_description(name)}")
            return 0
        if args.command == "graph":
            from langgraph_moa.graphs.drawing import mermaid

            print(mermaid(_spec(args)))
            return 0
        if args.command == "cache":
            from langgraph_moa.cache import cache_path, clear_cache

            if args.action == "clear":
                print(f"removed {clear_cache()} cached answers from {cache_path()}")
            else:
                print(cache_path())
            return 0
        if args.command == "estimate":
            from langgraph_moa.costs import estimate, format_estimate

            question = " ".join(args.question).strip() or None
            result = estimate(_spec(args), question, max_tokens=args.max_tokens)
            print(json.dumps(result.as_dict(), indent=2) if args.json else format_estimate(result))
            return 0
        if args.command == "eval":
            from langgraph_moa.eval.cli import main as eval_main
            from langgraph_moa.tuning import tune_gc

            tune_gc()  # many runs at once (langgraph_moa/tuning.py)
            try:
                return eval_main(args)
            except ImportError as exc:
                if exc.name not in EVAL_EXTRA:
                    raise
                raise MoAError(
                    f'moa eval needs {exc.name}: pip install "langgraph-moa[eval]"'
                ) from None
        if args.command == "serve":
            from langgraph_moa.serve import main as serve_main

            return serve_main(args)
        if args.command == "ui":
            from langgraph_moa.web import run_ui

            return run_ui(args)
        if args.command is None:
            _parser().print_help()
            return 2
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MoAError as exc:
        print(f"error: {scrub(str(exc))}", file=sys.stderr)
        if exc.partial and exc.partial.get("answers"):
            if getattr(args, "json", False):  # nothing computed is lost: hand it over
                calls = exc.partial.get("calls") or []
                out = {"error": str(exc), **exc.partial, "totals": run_totals(calls)}
                print(json.dumps(out, indent=2, ensure_ascii=False))
            else:
                print(
                    f"({len(exc.partial['answers'])} proposer answers were computed;"
                    " --json prints them)",
                    file=sys.stderr,
                )
        return 2
    except Exception as exc:  # one line, no traceback: the CLI's promise
        print(f"error: {type(exc).__name__}: {scrub(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
