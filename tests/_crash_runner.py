"""Run (or resume) one MoA thread with a persistent checkpointer; used by the crash tests.

    python tests/_crash_runner.py --saver sqlite --conn FILE --thread ID --spec JSON \\
        (--question TEXT | --resume)

Prints ``STARTED`` once the checkpointer is open and ``RESULT {json}`` (answer, answers,
calls) when the run completes. The crash test SIGKILLs it mid-run, then resumes the thread
with ``--resume`` (``ainvoke(None, config)``) in a fresh process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from contextlib import asynccontextmanager
from typing import Any


@asynccontextmanager
async def open_saver(kind: str, conn: str):
    if kind == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(conn) as saver:
            yield saver
    elif kind == "postgres":
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(conn) as saver:
            await saver.setup()
            yield saver
    else:
        raise SystemExit(f"unknown saver {kind!r}")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from langgraph_moa.graphs.builder import create_moa
    from langgraph_moa.models.factory import aclose_clients

    spec = json.loads(args.spec)
    config = {"configurable": {"thread_id": args.thread}}
    async with open_saver(args.saver, args.conn) as saver:
        graph = create_moa(spec, checkpointer=saver)
        print("STARTED", flush=True)
        graph_input = None if args.resume else {"messages": [("user", args.question)]}
        try:
            out = await graph.ainvoke(graph_input, config)
        finally:
            await aclose_clients()
    return {"answer": out["answer"], "answers": out["answers"], "calls": out["calls"]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--saver", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--conn", required=True, help="SQLite file or Postgres DSN")
    parser.add_argument("--thread", required=True)
    parser.add_argument("--spec", required=True, help="the MoA spec as JSON")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--question")
    group.add_argument("--resume", action="store_true")
    result = asyncio.run(main(parser.parse_args()))
    print("RESULT " + json.dumps(result), flush=True)
    sys.exit(0)
