"""The graph of a spec as Mermaid text: what ``moa graph`` prints and the web page draws.

Here, below the faces, so the CLI and the web server both import it without importing each
other (the web page used to import the CLI for it: cli -> serve -> web -> cli).
"""

from __future__ import annotations

from langgraph_moa.graphs.builder import build_graph
from langgraph_moa.graphs.spec import MoASpec


def mermaid(spec: MoASpec) -> str:
    """The graph as Mermaid, without LangGraph's internal error-handler nodes and metadata,
    so it reads like the paper's Figure 2."""
    drawable = build_graph(spec).compile(name=spec.name).get_graph()
    hidden = [n for n in drawable.nodes if n.startswith("__error_handler__")]
    for node in hidden:
        drawable.remove_node(drawable.nodes[node])
    for key, drawn in drawable.nodes.items():
        drawable.nodes[key] = drawn._replace(metadata=None)
    return drawable.draw_mermaid()
