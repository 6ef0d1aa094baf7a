# Two entry points (see README): `make report` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp

.PHONY: setup lock browser report examples pretrained classifiers test lint clean

setup: $(STAMP)

lock: setup
	$(PY) tools/write_lock.py

# Chromium from Debian for the browser test (tests/test_browser.py drives it with Playwright).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium is missing and this is not root: tests/test_browser.py will skip"; fi; \
	fi

# requirements.lock: every package at the exact version the tests passed with, resolved for Python 3.11 on
# x86_64 Linux (make lock writes it from requirements.txt, the direct pins). Elsewhere the lock's CUDA wheels do
# not exist, so the direct pins are installed and pip resolves the rest.
LOCKED := $(shell $(PYTHON) -c "import sys, platform; print(int(sys.platform == 'linux' and platform.machine() == 'x86_64' and sys.version_info[:2] == (3, 11)))" 2>/dev/null)
$(STAMP): requirements.lock requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(if $(filter 1,$(LOCKED)),requirements.lock,requirements.txt)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (vaelib)"
	touch $(STAMP)

# The main job: run every notebook on the embedded mnist dataset and render build/reports/mnist-small/.
report: setup
	$(PY) -m vaelib report --dataset mnist --budget small --out build/reports

# The committed example reports (reports/<dataset>-<budget>/): regenerated only on purpose, with nothing cached
# (runs/ is emptied first) so that their timings, copied into README.md's table, are honest.
examples: setup
	rm -rf runs
	$(PY) -m vaelib report --dataset mnist --budget small --force
	$(PY) -m vaelib report --dataset shapes --budget small --force
	$(PY) -m vaelib timings --write README.md
	$(MAKE) pretrained

# The small models notebooks 02 and 05 open with (vaelib/pretrained/): the runs of the mnist and shapes presets at
# the small budget, trained into runs/ where missing and copied (`make examples` runs this last).
pretrained: setup
	$(PY) -c "from vaelib.experiments.budgets import notebook_config as c; from vaelib.lessons.latent_explorer import train_and_ship; [print(train_and_ship(c(d, 'small'))) for d in ('mnist', 'shapes')]"

# The domain classifiers sample quality is measured with (vaelib/pretrained/classifier-<dataset>.pt): trained from
# the package's own data, deterministic on a CPU; prints each one's test accuracy.
classifiers: setup
	$(PY) -c "from vaelib.models.classifier import DATASETS, ship_classifier; [print(d, *ship_classifier(d)) for d in DATASETS]"

# 2 worker processes, a test file each at a time (nbval runs a notebook's cells in order in one kernel).
TEST_WORKERS ?= 2
test: setup browser lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: setup
	$(PY) -m ruff check vaelib tests benchmarks notebooks tools
	$(VENV)/bin/lint-imports

clean:
	rm -rf runs build .pytest_cache .ruff_cache
