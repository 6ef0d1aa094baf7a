"""nbval: drop stderr streams (warnings) before comparing a cell's outputs with the committed ones."""

import os

import nbval.plugin


def _without_stderr(outputs):
    return [o for o in outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]


_compare = nbval.plugin.IPyNbCell.compare_outputs


def compare_outputs(self, test, ref, skip_compare=None):
    return _compare(self, _without_stderr(test), _without_stderr(ref), skip_compare)


nbval.plugin.IPyNbCell.compare_outputs = compare_outputs

# nbval's kernels inherit this: notebooks run unattended, so no progress bars (vaelib.runtime.headless).
os.environ.setdefault("VAELIB_HEADLESS", "1")
