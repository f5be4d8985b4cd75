"""The code passes the linter (ruff, configured in pyproject.toml)."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def test_ruff_clean(root):
    exe = shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed: pip install -r requirements.txt")
    r = subprocess.run([exe, "check", str(root)], capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_ruff_format_is_the_one_formatting_rule(root):
    """Every file is as ``ruff format`` writes it (no per-line exceptions: run ``ruff format``)."""
    exe = shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed: pip install -r requirements.txt")
    r = subprocess.run([exe, "format", "--check", str(root)], capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, "run 'ruff format' on: " + r.stdout[-4000:] + r.stderr[-2000:]
    skips = subprocess.run(
        ["git", "grep", "-n", "fmt: " + "skip", "--", "*.py"], capture_output=True, text=True, cwd=root
    )
    assert not skips.stdout, skips.stdout[:2000]


def test_core_imports_no_ros(root):
    """The core must work on a training machine without ROS: importing it pulls in no rclpy."""
    core = [f"depth_defocus_ros.{m}" for m in sorted(HELPERS | {"optics", "cli"})] + [
        f"depth_defocus_ros.{g}.{p.stem}"
        for g in [*GROUPS, "bags"]  # bags: rosbags converts without a ROS install
        for p in sorted((root / PACKAGE / g).glob("*.py"))
    ]
    code = (
        f"import sys; import {', '.join(core)}; "
        "bad = [m for m in sys.modules if m.startswith(('rclpy', 'sensor_msgs'))]; assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]


# The pipeline's groups, in import order: a module may import from its own group and the ones before
# it, never from one after it (optics and the small helpers come first; the users of everything last).
PACKAGE = "depth_defocus_ros"
HELPERS = {"paths", "imagecodec", "argtypes", "viz", "rosenv"}
GROUPS = ["synth", "reading", "model", "estimate", "learn", "evaluation"]
USERS = {"cli", "__main__", "bags", "ros"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _rank(module: str) -> int:
    """Position of a package module (dotted, without the package) in the import order."""
    head = module.split(".")[0]
    if head in ("optics", "", "__init__") or head in HELPERS:
        return 0
    if head in GROUPS:
        return 1 + GROUPS.index(head)
    assert head in USERS, f"{PACKAGE}.{module} belongs to no group: add it to one (test/test_lint.py)"
    return 1 + len(GROUPS)


def _imports(path: Path, root: Path):
    """(line, imported package module without the package prefix) for every import in ``path``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    pkg = parts[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1] + (node.module.split(".") if node.module else [])
                names = [".".join(base + [a.name]) for a in node.names] if not node.module else [".".join(base)]
            else:
                names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                yield node.lineno, name[len(PACKAGE) + 1 :]


def test_imports_run_one_way_between_groups(root):
    """optics <- synth <- reading <- model <- estimate <- learn <- evaluation <- cli / bags / ros."""
    bad = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        own = ".".join(path.relative_to(root / PACKAGE).with_suffix("").parts)
        for line, target in _imports(path, root):
            if _rank(target) > _rank(own) or (_rank(own) == 0 and target.split(".")[0] not in ("optics", "")):
                bad.append(f"{path.relative_to(root)}:{line} imports {PACKAGE}.{target}")
    assert not bad, "imports that run back up the pipeline:\n" + "\n".join(bad)


def test_the_layering_check_catches_a_back_import(tmp_path):
    """The rule above must fail on a back-import (a check that passes on anything checks nothing)."""
    mod = tmp_path / PACKAGE / "synth" / "bad.py"
    mod.parent.mkdir(parents=True)
    mod.write_text("from ..learn.train import Trainer\nfrom ..optics import Lens\n")
    found = [(line, t, _rank(t) > _rank("synth.bad")) for line, t in _imports(mod, tmp_path)]
    assert found == [(1, "learn.train", True), (2, "optics", False)]


def test_top_level_holds_only_optics_and_helpers(root):
    top = {p.stem for p in (root / PACKAGE).glob("*.py")} - {"__init__"}
    assert top == HELPERS | {"optics", "cli", "__main__"}, "a core module belongs in a group folder"
    folders = {p.name for p in (root / PACKAGE).iterdir() if (p / "__init__.py").exists()}
    assert folders == set(GROUPS) | {"bags", "ros"}
    for folder in folders:
        doc = ast.get_docstring(ast.parse((root / PACKAGE / folder / "__init__.py").read_text()))
        assert doc and len(doc) > 200, f"{folder}/__init__.py: say what the group holds and may import"


def test_modules_and_functions_stay_small(root):
    long = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(root)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{rel}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{rel}:{node.lineno} {node.name}(): {n} lines")
    assert not long, f"over {MAX_MODULE_LINES} lines a module / {MAX_FUNCTION_LINES} a function:\n" + "\n".join(long)
