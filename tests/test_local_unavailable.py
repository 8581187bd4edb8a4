"""A server without the ``local`` extra (an image built from ``dependencies: ["."]``) that is
asked for the ``moa_local`` graph fails at once with the install hint: the missing model is
permanent, so LangGraph's RetryPolicy must not try it again (it used to, three times)."""

from __future__ import annotations

from pathlib import Path

import pytest

from langgraph_moa import MoAError, create_moa
from langgraph_moa.models import local


def test_missing_local_model_is_not_retried(tmp_path: Path, monkeypatch) -> None:
    tries: list[str] = []

    def unavailable(key: tuple[str, int, bool, int]) -> None:
        tries.append(key[0])
        raise local.LocalModelUnavailableError(
            "llama-cpp-python is not installed; install the offline extra with: "
            'pip install "langgraph-moa[local]"'
        )

    monkeypatch.setattr(local, "_load", unavailable)
    m = {"model": "local:smollm2", "retry": {"max_attempts": 3, "initial_interval": 0.01}}
    graph = create_moa({"layers": [[{**m, "name": "p"}]], "aggregator": {**m, "name": "agg"}})
    with pytest.raises(MoAError) as exc:
        graph.invoke({"messages": [("user", "hi")]})
    assert "langgraph-moa[local]" in str(exc.value)
    assert len(tries) == 1, tries
