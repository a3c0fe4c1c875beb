"""The house rules of the layout, read from the source with ``ast`` (nothing is imported):

- the engine (``lrpgraph/engine/``) imports nothing above it: not the rule library, the
  methods, the dataset runner, the evaluation, the CLI or the applications (viz, io, text,
  assets, demo); rules import only the engine; the methods import the engine, the rules and
  the small helpers (memory, postprocess), never the applications;
- no module outside ``lrpgraph/cli*`` imports the CLI or argparse;
- the import graph of lrpgraph has no cycle and no module imports the package root;
- imports sit at the top of the module; a function imports locally only a heavy optional
  dependency (ray, keras_hub, zarr, fsspec), with a comment saying so.  matplotlib is not
  one of them: it is a required dependency (pyproject.toml), ``import keras`` loads
  ``matplotlib.pyplot`` already, and viz, the evaluation plots and the store reader import
  it at the top like numpy.

docs/architecture.md describes the layers these rules keep apart.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from functools import lru_cache
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent

# may be imported by anything, the engine included; they import only the engine themselves
FOUNDATION = ("lrpgraph.errors", "lrpgraph.targets")
# small helpers the methods use (each imports nothing of lrpgraph but the foundation)
METHOD_HELPERS = ("lrpgraph.memory", "lrpgraph.postprocess")
# a function may import these locally (optional, or heavy and needed only on one path); a required
# dependency (numpy, networkx, scikit-image and scipy, matplotlib, TensorFlow/Keras) is imported at the top
LOCAL_OK = ("ray", "keras_hub", "zarr", "fsspec")


def _name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "rules":  # setuptools installs the top-level rules/ as lrpgraph.rules
        parts = ["lrpgraph", "rules"] + parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@lru_cache(maxsize=None)
def modules():
    """{module name: path} of lrpgraph/ and rules/."""
    files = [*ROOT.joinpath("lrpgraph").rglob("*.py"), *ROOT.joinpath("rules").rglob("*.py")]
    return {_name(p): p for p in sorted(files)}


def _inside(mod, pkg):
    return mod == pkg or mod.startswith(pkg + ".")


def _known(mod):
    """The nearest module of ours that ``mod`` names (``a.b.c`` -> ``a.b`` if only that exists)."""
    while mod and mod not in modules():
        mod = mod.rpartition(".")[0]
    return mod


class Import:
    def __init__(self, target, node, local):
        self.target, self.node, self.local = target, node, local
        self.lineno = node.lineno

    def __repr__(self):
        return f"line {self.lineno}: {ast.unparse(self.node)}"


@lru_cache(maxsize=None)
def imports(mod):
    """Every import statement of ``mod``: [Import], ``target`` the lrpgraph module it loads
    (``from pkg import sub`` loads ``pkg.sub``; a name from ``pkg`` loads ``pkg``), None
    for imports from outside lrpgraph."""
    path = modules()[mod]
    tree = ast.parse(path.read_text())
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    local_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    out = []
    for node in ast.walk(tree):
        local = id(node) in local_nodes
        if isinstance(node, ast.Import):
            for a in node.names:
                out.append(Import(_known(a.name) if _inside(a.name, "lrpgraph") else None, node, local))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not _inside(source, "lrpgraph"):
                out.append(Import(None, node, local))
                continue
            for a in node.names:
                sub = f"{source}.{a.name}"
                out.append(Import(sub if sub in modules() else _known(source), node, local))
    return out


def _layer_problems(mod):
    """The imports of ``mod`` that cross a layer boundary the wrong way."""
    targets = [(i, i.target) for i in imports(mod) if i.target]
    problems = []
    if _inside(mod, "lrpgraph.engine") or mod in FOUNDATION:
        allowed = ("lrpgraph.engine",) + FOUNDATION
    elif _inside(mod, "lrpgraph.rules"):
        allowed = ("lrpgraph.engine", "lrpgraph.rules") + FOUNDATION
    elif mod in METHOD_HELPERS:
        allowed = FOUNDATION
    elif _inside(mod, "lrpgraph.methods"):
        allowed = ("lrpgraph.engine", "lrpgraph.rules", "lrpgraph.methods") + METHOD_HELPERS + FOUNDATION
    else:
        allowed = None
    for i, t in targets:
        if allowed is not None and not any(_inside(t, a) for a in allowed):
            problems.append(f"{mod} imports {t} ({i})")
        if _inside(t, "lrpgraph.cli") and not (_inside(mod, "lrpgraph.cli") or mod == "lrpgraph.__main__"):
            problems.append(f"{mod} imports the CLI {t} ({i})")
        if t == "lrpgraph" and mod != "lrpgraph":
            problems.append(f"{mod} imports the package root ({i}): import the module that defines the name")
    return problems


def _style_problems(mod):
    """argparse outside the CLI; local imports other than a commented heavy optional one."""
    problems = []
    lines = modules()[mod].read_text().splitlines()
    for i in imports(mod):
        names = [a.name for a in i.node.names] if isinstance(i.node, ast.Import) else [i.node.module or ""]
        if any(n.split(".")[0] == "argparse" for n in names) and not _inside(mod, "lrpgraph.cli"):
            problems.append(f"{mod} imports argparse ({i}): only lrpgraph/cli parses arguments")
        if not i.local:
            continue
        top = names[0].split(".")[0] if not getattr(i.node, "level", 0) else ""
        commented = any("#" in lines[k] for k in range(max(i.lineno - 2, 0), i.node.end_lineno))  # or the line above
        if not (top in LOCAL_OK and commented):
            problems.append(f"{mod} imports inside a function ({i}): move it to the top of the module"
                            + ("" if top not in LOCAL_OK else "; a local import of an optional dependency "
                               "needs a comment saying why"))
    return problems


@pytest.mark.parametrize("mod", list(modules()))
def test_module_imports_only_from_the_layers_below_it(mod):
    assert not _layer_problems(mod)


@pytest.mark.parametrize("mod", list(modules()))
def test_module_imports_at_the_top_and_leaves_argparse_to_the_cli(mod):
    assert not _style_problems(mod)


def import_graph():
    """module -> modules it loads, including the packages Python loads on the way (importing
    ``lrpgraph.methods.base`` from outside ``lrpgraph.methods`` runs ``methods/__init__``)."""
    g = nx.DiGraph()
    for mod in modules():
        g.add_node(mod)
        for i in imports(mod):
            if not i.target:
                continue
            if i.target != mod:
                g.add_edge(mod, i.target)
            parent = i.target.rpartition(".")[0]
            while parent:  # packages loaded on the way, unless mod is inside them (loaded already)
                if not _inside(mod, parent):
                    g.add_edge(mod, parent)
                parent = parent.rpartition(".")[0]
    return g


def cycles(g):
    return sorted(sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1)


def test_no_import_cycle():
    assert not cycles(import_graph())


def test_the_scan_sees_the_layers():
    """The rules above are only as good as the scan: it must see real edges."""
    g = import_graph()
    assert g.has_edge("lrpgraph.methods.analyzer", "lrpgraph.engine.compile")
    assert g.has_edge("lrpgraph.rules.base", "lrpgraph.engine.context")
    assert g.has_edge("lrpgraph.evaluation.check", "lrpgraph.rules.presets")
    assert "lrpgraph.rules.presets" in modules() and "lrpgraph.engine.ops.keras" in modules()
    # a layer violation and a local import are found when present
    assert _inside("lrpgraph.engine.ops.keras", "lrpgraph.engine")
    assert [i for i in imports("lrpgraph.engine.ops.keras_hub") if i.local]  # keras_hub, commented
    assert not _style_problems("lrpgraph.engine.ops.keras_hub")


# ---- rules/ at the top level, lrpgraph.rules in the package --------------------------------

_PROBE = ("import lrpgraph, lrpgraph.rules, lrpgraph.rules.presets as p; "
          "print(lrpgraph.__file__); print(lrpgraph.rules.__file__); print(p.PRESETS['lrp.epsilon'].name)")


@pytest.mark.slow
def test_import_lrpgraph_from_the_repository_root_with_a_regular_install(tmp_path):
    """A wheel installed into a fresh venv: from the repository root, Python imports the
    checkout's lrpgraph/ (it shadows the installed one) and lrpgraph.rules is the checkout's
    rules/; from elsewhere, the installed package with rules/ inside it."""
    run = lambda cmd, **kw: subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)  # noqa: E731
    src = tmp_path / "src"  # build from a copy: setuptools writes build/ and *.egg-info beside the sources
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for part in ("lrpgraph", "rules"):
        shutil.copytree(ROOT / part, src / part, ignore=skip)
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, src / part)
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                 "-w", str(tmp_path / "dist"), str(src)], cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    wheel, = (tmp_path / "dist").glob("lrpgraph-*.whl")
    venv.create(tmp_path / "venv", with_pip=False)
    py = str(tmp_path / "venv" / "bin" / "python")
    site = run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    # the new venv sees this interpreter's packages (TensorFlow, ...) but not its lrpgraph: a .pth
    # names the site-packages folders only, so the editable install's finder there is not run
    shared = {sysconfig.get_paths()["purelib"], *(p for p in sys.path if p.endswith("-packages"))}
    Path(site, "shared.pth").write_text("\n".join(sorted(shared)) + "\n")
    installed = run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q",
                     str(wheel)])
    assert installed.returncode == 0, installed.stderr
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")

    root = run([py, "-c", _PROBE], cwd=ROOT, env=env)
    assert root.returncode == 0, root.stderr[-2000:]
    assert root.stdout.split() == [str(ROOT / "lrpgraph" / "__init__.py"), str(ROOT / "rules" / "__init__.py"),
                                   "lrp.epsilon"]
    away = run([py, "-c", _PROBE], cwd=tmp_path, env=env)
    assert away.returncode == 0, away.stderr[-2000:]
    assert away.stdout.split() == [str(Path(site, "lrpgraph", "__init__.py")),
                                   str(Path(site, "lrpgraph", "rules", "__init__.py")), "lrp.epsilon"]
