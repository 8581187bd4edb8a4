"""MkDocs hooks: the reference pages are generated from the code at build time.

A page asks for generated content with a marker on a line of its own::

    <!-- gen:spec -->            every field of MoASpec and its nested models (pydantic)
    <!-- gen:context -->         every field of Context (the per-run settings)
    <!-- gen:cli -->             every command and option of `moa` (its argparse parser)
    <!-- gen:presets -->         the built-in presets and their first comment line
    <!-- gen:mermaid PRESET -->  `moa graph --preset PRESET`, as a Mermaid block

Why generated: a hand copy of 60 fields or 80 options drifts the day someone adds one; read
from ``model_fields`` and the parser, the reference cannot. The HTTP reference keeps its
hand-written descriptions, but the build fails if its tables and the apps' routes differ.
The site's Mermaid script is the one the web page ships (``langgraph_moa/web/static/vendor``),
so the site loads no script from a CDN.

The generators are plain functions of the code, tested in ``tests/test_docs.py``.
"""

from __future__ import annotations

import argparse
import re
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MERMAID_JS = ROOT / "langgraph_moa" / "web" / "static" / "vendor" / "mermaid.min.js"
MERMAID_URL = "assets/javascripts/mermaid.min.js"
MARKER = re.compile(r"^<!-- gen:(?P<what>[a-z]+)(?: (?P<arg>[\w.-]+))? -->$", re.M)


# --------------------------------------------------------------------------- spec fields


def _type_name(annotation: Any) -> str:
    """A field's type as a reader writes it in YAML terms (``list[list[ModelSpec]]``)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "None"
    if annotation is typing.Any:
        return "Any"
    return getattr(annotation, "__name__", str(annotation))


def _type_cell(annotation: Any) -> str:
    """The type for a table cell: each alternative in its own code span, because a ``|``
    inside a code span in a Markdown table stays escaped (``\\|``) when rendered."""
    parts = [p.strip() for p in _type_name(annotation).split(" | ")]
    merged: list[str] = []  # a union inside brackets (list[int | None]) stays one part
    for part in parts:
        if merged and merged[-1].count("[") > merged[-1].count("]"):
            merged[-1] += f" | {part}"
        else:
            merged.append(part)
    return " \\| ".join(f"`{part}`" for part in merged)


def _bounds(metadata: Iterable[Any]) -> str:
    """``ge=0, le=2`` style constraints as ``0 ≤ x ≤ 2`` / ``at most 16 items``."""
    low = high = ""
    items = []
    for m in metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">")):
            if getattr(m, attr, None) is not None:
                low = f"{sign} {getattr(m, attr)}"
        for attr, sign in (("le", "≤"), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                high = f"{sign} {getattr(m, attr)}"
        if getattr(m, "max_length", None) is not None:
            items.append(f"at most {m.max_length} items")
    return ", ".join(filter(None, [low, high, *items]))


def _default(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    if field.is_required():
        return "**required**"
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is PydanticUndefined:
        return "**required**"
    if hasattr(value, "model_dump"):
        return "defaults of its fields"
    text = repr(value)
    if isinstance(value, str) and len(value) > 40:
        return "the paper's text (see the description)"
    return f"`{text}`" if value is not None else "`None`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def model_table(model: type[Any]) -> str:
    """One Markdown table: field, type, default, bounds, description."""
    rows = ["| field | type | default | bounds | description |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        rows.append(
            "| `{}` | {} | {} | {} | {} |".format(
                name,
                _type_cell(field.annotation),
                _default(field),
                _bounds(field.metadata),
                _cell(field.description or ""),
            )
        )
    return "\n".join(rows)


def _doc(obj: Any) -> str:
    return "\n".join(line.strip() for line in (obj.__doc__ or "").strip().splitlines())


def spec_models() -> list[type[Any]]:
    """MoASpec first, then every model nested in it, in the order they are reached."""
    from pydantic import BaseModel

    from langgraph_moa.graphs.spec import MoASpec

    found: list[type[Any]] = []
    queue: list[type[Any]] = [MoASpec]
    while queue:
        model = queue.pop(0)
        if model in found:
            continue
        found.append(model)
        for field in model.model_fields.values():
            queue.extend(_nested(field.annotation, BaseModel))
    return found


def _nested(annotation: Any, base: type[Any]) -> list[type[Any]]:
    if isinstance(annotation, type) and issubclass(annotation, base):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _nested(a, base)]


def spec_reference() -> str:
    out = []
    for model in spec_models():
        out += [f"## {model.__name__}", "", _doc(model), "", model_table(model), ""]
    return "\n".join(out)


def context_reference() -> str:
    import dataclasses

    from langgraph_moa.graphs.state import Context

    hints = typing.get_type_hints(Context)
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for f in dataclasses.fields(Context):
        default = "`None`" if f.default is None else f"`{f.default!r}`"
        rows.append(
            f"| `{f.name}` | {_type_cell(hints[f.name])} | {default}"
            f" | {_cell(f.metadata.get('description', ''))} |"
        )
    return "\n".join([_doc(Context), "", *rows])


# --------------------------------------------------------------------------- CLI


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    out: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                sub.description = sub.description or helps.get(name)
                out.append((name, sub))
    return out


def _option_row(action: argparse.Action) -> str | None:
    if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
        return None
    if action.option_strings:
        flags = ", ".join(action.option_strings)
        if action.nargs != 0:
            flags += " " + (action.metavar or action.dest.upper())
    else:
        flags = action.metavar or action.dest
        if action.nargs in ("*", "+"):
            flags += " ..."
    details = []
    if action.choices is not None:
        details.append("one of " + ", ".join(f"`{c}`" for c in action.choices))
    if action.default not in (None, False, argparse.SUPPRESS) and action.nargs != 0:
        details.append(f"default `{action.default}`")
    if isinstance(action, argparse._AppendAction):
        details.append("repeatable")
    if action.required and action.nargs not in ("*", "?"):
        details.append("required")
    text = (action.help or "").replace("%(default)s", str(action.default))
    return f"| `{flags}` | {_cell(text)} | {'; '.join(details)} |"


def _parser_section(title: str, parser: argparse.ArgumentParser, level: int) -> list[str]:
    usage = " ".join(parser.format_usage().split()).removeprefix("usage: ")
    out = [f"{'#' * level} {title}", "", f"```text\n{usage}\n```", ""]
    if parser.description:
        out += [_cell(parser.description), ""]
    rows = [r for r in map(_option_row, parser._actions) if r]
    if rows:
        out += ["| argument | what | details |", "|---|---|---|", *rows, ""]
    for name, sub in _subcommands(parser):
        out += _parser_section(f"{title} {name}", sub, min(level + 1, 4))
    return out


def cli_reference() -> str:
    from langgraph_moa.cli import _parser

    parser = _parser()
    top = _parser_section("moa", parser, 2)
    return "\n".join(top)


# --------------------------------------------------------------------------- presets, graph


def presets_table() -> str:
    from langgraph_moa.graphs.spec import preset_description, preset_names

    rows = ["| preset | what it is |", "|---|---|"]
    rows += [f"| `{name}` | {_cell(preset_description(name))} |" for name in preset_names()]
    return "\n".join(rows)


def mermaid_block(preset: str) -> str:
    from langgraph_moa.graphs.drawing import mermaid
    from langgraph_moa.graphs.spec import load_preset

    return f"```mermaid\n{mermaid(load_preset(preset)).strip()}\n```"


# --------------------------------------------------------------------------- HTTP routes


ROUTE_ROW = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/[^`]*)` \|", re.M)


def _walk(routes: Iterable[Any], prefix: str = "") -> set[tuple[str, str]]:
    """(method, path) of routes, into included routers (FastAPI >= 0.165 includes lazily:
    the included router's routes stay on it, with the prefix in its include context)."""
    found = set()
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            found |= _walk(included.routes, prefix + getattr(context, "prefix", ""))
        elif getattr(route, "methods", None):
            found.update((m, prefix + route.path) for m in route.methods - {"HEAD"})
    return found


def app_routes() -> set[tuple[str, str]]:
    """(method, path) of every route ``moa serve`` answers (the web page's router included)."""
    import tempfile

    from langgraph_moa.graphs.spec import load_preset
    from langgraph_moa.serve.app import create_app

    with tempfile.TemporaryDirectory() as tmp:  # the UI's thread store: never the user's
        app = create_app({"local": load_preset("local")}, db_path=Path(tmp) / "threads.sqlite")
        return _walk(app.routes)


def documented_routes(markdown: str) -> set[tuple[str, str]]:
    return {(m, p) for m, p in ROUTE_ROW.findall(markdown)}


def check_routes(markdown: str) -> list[str]:
    """What differs between a page's route tables and the app: one message per route."""
    actual, documented = app_routes(), documented_routes(markdown)
    return [f"route {m} {p} is not documented" for m, p in sorted(actual - documented)] + [
        f"documented route {m} {p} does not exist" for m, p in sorted(documented - actual)
    ]


# --------------------------------------------------------------------------- MkDocs hooks

GENERATORS = {
    "spec": lambda _: spec_reference(),
    "context": lambda _: context_reference(),
    "cli": lambda _: cli_reference(),
    "presets": lambda _: presets_table(),
    "mermaid": mermaid_block,
}


def render(markdown: str) -> str:
    """Replace every marker; an unknown one is an error (a typo must not vanish silently)."""

    def one(match: re.Match[str]) -> str:
        what, arg = match["what"], match["arg"]
        if what not in GENERATORS:
            raise ValueError(f"unknown generated block {match[0]!r}")
        return str(GENERATORS[what](arg))

    return MARKER.sub(one, markdown)


def on_config(config: Any) -> Any:
    # Material renders ```mermaid blocks with the global `mermaid` when one is loaded and
    # only fetches its own copy from a CDN otherwise.
    config["extra_javascript"].append(MERMAID_URL)
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(
        File.generated(config, MERMAID_URL, abs_src_path=str(MERMAID_JS))  # type: ignore[attr-defined]
    )
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    from mkdocs.exceptions import PluginError

    try:
        markdown = render(markdown)
    except Exception as exc:  # the page names the marker; the build stops
        raise PluginError(f"{page.file.src_path}: {exc}") from exc
    if page.file.src_path == "reference/http.md" and (problems := check_routes(markdown)):
        raise PluginError(f"{page.file.src_path}: " + "; ".join(problems))
    return markdown
