import pytest
import torch

from vaelib.lessons import exercises as E


def _stub(*_):
    raise NotImplementedError("exercise")


WRONG = {  # a plausible mistake per exercise: each must be caught
    "data_mean_sse": lambda train, test: (test.double() - train.double().mean(0)).pow(2).flatten(1).sum(1).mean()
    .item(),  # forgot to scale pixels to [0, 1]
    "conv_out": lambda size, kernel, stride, padding: size // stride,  # ignores kernel and padding
    "cyclic_beta": lambda step, total, cycles, ratio, beta: beta * min(step / total, 1.0),  # one ramp, no cycles
    "pull": lambda images, recon, mean: 0.0,
    "slerp": lambda z_a, z_b, t: (1 - t) * z_a + t * z_b,  # linear, not spherical
}
ALL = [(nb, name, check, solution) for nb, ex in E.EXERCISES.items() for name, (check, solution) in ex.items()]


@pytest.mark.parametrize("notebook,name,check,solution", ALL, ids=[f"{nb}-{n}" for nb, n, _, _ in ALL])
def test_every_exercise_check_passes_its_solution_and_catches_a_mistake(notebook, name, check, solution):
    assert check(solution) == f"right: {name} agrees with vaelib"
    assert check(_stub) == f"not done yet: {name} still raises NotImplementedError"
    wrong = check(WRONG[name])
    assert wrong.startswith(f"wrong: {name} "), wrong


def test_a_check_reports_an_error_and_a_wrong_shape_in_one_line():
    assert E.check_slerp(lambda z_a, z_b, t: z_a[:3]).startswith("wrong: slerp at t = 0: returned shape (3,)")
    assert E.check_conv_out(lambda *a: 1 / 0) == "wrong: conv_out raised ZeroDivisionError: division by zero"
    assert E.number_problem(torch.tensor(2.0), 2.0, "") is None
    assert "expected a number" in E.number_problem("2", 2.0, "")



def _solution_bodies():
    """The code lines of every reference solution (its body, without the def line and the docstring)."""
    import ast
    import inspect

    from vaelib.lessons import solutions

    tree = ast.parse(inspect.getsource(solutions))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("solution_"):
            body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body  # without the docstring
            yield node.name, [ast.unparse(stmt).split("\n")[0] for stmt in body]


def test_no_solution_stands_in_a_notebook_or_a_committed_report():
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pages = {p: "\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"])
             for p in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))}
    pages |= {p: p.read_text() for p in sorted((root / "reports").glob("*/[0-9][0-9]_*.html"))}
    bodies = dict(_solution_bodies())
    assert len(bodies) >= 8 and all(bodies.values())

    def shown(name, lines, text):  # its def line, or its whole body (a lesson may share single lines with it)
        flat = text.replace(" ", "")
        return f"def{name}(" in flat or all(line.replace(" ", "") in flat for line in lines)

    for name, lines in bodies.items():
        for path, text in pages.items():
            assert not shown(name, lines, text), f"{path.name} shows {name}"
    # the check can fail: a page that prints a solution's source (as the notebooks did) is caught
    import inspect

    from vaelib.lessons import solutions
    assert all(shown(name, lines, inspect.getsource(getattr(solutions, name))) for name, lines in bodies.items())
