"""Users' type checkers see our types: after an editable install (this venv) and after a
normal wheel install, mypy resolves ``langgraph_moa`` and its ``graphs``/``nodes``/``prompts``
subpackages to real, annotated code (``py.typed``), never to ``Any`` or "module not found".
The release check: ``python -m build`` makes the sdist from the files a fresh clone has and the
wheel from that sdist, ``twine check`` passes both, and the wheel ships every module and data
file of the package, prints its version and answers the README's first question (the tests
otherwise run on an editable install, which sees the source tree whatever pyproject lists).

The contributors' side (``mypy`` over the package itself, zero errors) runs in
``scripts/test``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

USER_CODE = textwrap.dedent(
    """
    from langgraph_moa import Context, MoASpec, ModelSpec, create_moa
    from langgraph_moa.graphs.spec import load_preset
    from langgraph_moa.nodes.budget import estimate_tokens
    from langgraph_moa.prompts import AGGREGATE_PROMPT

    graph = create_moa(preset="local")
    spec = MoASpec(
        layers=[[ModelSpec(model="local:smollm2")]],
        aggregator=ModelSpec(model="local:smollm2"),
    )
    reveal_type(graph)
    reveal_type(spec.layers)
    reveal_type(load_preset("moa").aggregator.price)
    reveal_type(Context(temperature=0.2).stream_proposers)
    reveal_type(estimate_tokens(AGGREGATE_PROMPT))
    """
)

EXPECTED = [
    "langgraph.graph.state.CompiledStateGraph[",
    "list[list[langgraph_moa.graphs.spec.ModelSpec]]",
    "langgraph_moa.graphs.spec.Price | None",
    '"bool"',
    '"int"',
]


def _mypy(python: str, cwd: Path) -> str:
    (cwd / "user_code.py").write_text(USER_CODE)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--python-executable",
            python,
            "user_code.py",
        ],
        cwd=cwd,  # outside the repo: only the installed package can be found
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out.stdout + out.stderr


def _assert_typed(report: str) -> None:
    revealed = [line for line in report.splitlines() if "Revealed type is" in line]
    assert len(revealed) == len(EXPECTED), report
    for line, expected in zip(revealed, EXPECTED, strict=True):
        assert expected in line, report
    assert "error:" not in report, report


@pytest.mark.slow
def test_user_mypy_sees_types_after_editable_install(tmp_path: Path) -> None:
    _assert_typed(_mypy(sys.executable, tmp_path))


def _pyproject_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version = "([^"]+)"$', text, re.M)
    assert match, "pyproject.toml has no version"
    return match[1]


def _copy(tmp_path: Path) -> str:
    """The project's files as a fresh clone has them (tracked and new, links kept), without
    this checkout's build/ and *.egg-info: setuptools ships whatever an old SOURCES.txt lists,
    which once hid a package missing from pyproject's list."""
    copy = tmp_path / "project"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        src, dst = ROOT / name, copy / name
        if not src.is_symlink() and not src.is_file():
            continue  # deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)
    return str(copy)


def _release(tmp_path: Path) -> tuple[Path, Path]:
    """The release check: ``python -m build`` makes the sdist and, from the sdist, the wheel
    (so a file missing from the sdist is missing from the wheel, and the tests below see it);
    ``twine check`` validates both as PyPI would (metadata, the README as long description).
    No isolation: the build backend comes from this venv, not from the network."""
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), _copy(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (sdist,) = dist.glob("langgraph_moa-*.tar.gz")
    (wheel,) = dist.glob("langgraph_moa-*.whl")
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2, checked.stdout
    return sdist, wheel


@pytest.mark.slow
def test_wheel_install_is_typed_complete_and_answers(tmp_path: Path) -> None:
    sdist, wheel = _release(tmp_path)
    version = _pyproject_version()
    assert sdist.name == f"langgraph_moa-{version}.tar.gz"
    assert wheel.name == f"langgraph_moa-{version}-py3-none-any.whl"
    with tarfile.open(sdist) as tar:  # what a source install starts from
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    package = "src/langgraph_moa"  # the links into graphs/, nodes/, prompts/ become files
    assert {"README.md", "CHANGELOG.md", "pyproject.toml"} <= members
    assert {f"{package}/graphs/spec.py", f"{package}/prompts/aggregate.txt"} <= members
    names = zipfile.ZipFile(wheel).namelist()
    assert "langgraph_moa/py.typed" in names
    assert "langgraph_moa/graphs/spec.py" in names and "langgraph_moa/nodes/layer.py" in names
    # only our package: no generic top-level `graphs` / `nodes` / `prompts` modules
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"langgraph_moa"}

    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    python = str(env / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)  # a wheel install is an unzip into site-packages
    # langgraph & co. come from this venv's site-packages (a .pth adds it after our own
    # site-packages, and pth files in it, such as our editable hook, are not processed).
    ours = sysconfig.get_paths()["purelib"]
    Path(site, "deps.pth").write_text(ours + "\n")
    where = subprocess.run(
        [python, "-c", "import langgraph_moa; print(langgraph_moa.__file__)"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(site), where
    _assert_typed(_mypy(python, tmp_path))
    # Everything of the package's tree is shipped (modules and data), and the command starts:
    # an editable install would hide a package missing from pyproject's list.
    tree = {
        str((Path(folder) / f).relative_to(ROOT))
        for folder, dirs, files in os.walk(ROOT / "langgraph_moa", followlinks=True)
        if "__pycache__" not in folder
        for f in files
    }
    assert tree - set(names) == set(), "not in the wheel"
    shown = subprocess.run(
        [python, "-m", "langgraph_moa.cli", "--version"], capture_output=True, text=True
    )
    assert shown.stdout.strip() == f"moa {version}", shown
    for args in (["serve", "--help"], ["What is Mixture-of-Agents?"]):  # README's "Try it"
        moa = subprocess.run(
            [python, "-m", "langgraph_moa.cli", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert moa.returncode == 0 and moa.stdout.strip(), moa.stderr
