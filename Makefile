# Two commands on a fresh clone: `make run` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# torch==2.13.0 is a CPU wheel already on this machine's disk; an unpinned torch
# could pull a multi-GB CUDA build. A venv that already has any torch keeps it.
TORCH  ?= torch==2.13.0

.PHONY: run test lint venv clean browser

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch
	$(PIP) install -e ".[dev]"
	touch $@ $(VENV)/.installed

venv: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/dqnlm train --preset cartpole

# The page test of `dqnlm dialogue serve` drives the system's Chromium; install it when
# we can (root and apt), else that one test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    timeout 600 apt-get install -y -q chromium >/dev/null 2>&1; } || \
	  echo "no Chromium: the browser test of dqnlm dialogue serve will be skipped"

test: $(VENV)/.installed-dev browser
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
