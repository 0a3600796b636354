# Likeness developer entry points. The README's first two commands are
# `make demo` and `make test`; both set up .venv/ first and are idempotent.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# On a GPU machine pick the CUDA build of the pinned torch, e.g.
#   make setup TORCH_INDEX_URL=<CUDA wheel index for torch 2.13.0>
TORCH_INDEX_URL ?=
STAMP := $(VENV)/.likeness-installed
DEMO_OUT ?= out/demo
# The main job's photo: Grace Hopper's portrait, which ships with matplotlib.
DEMO_PHOTO = $(shell $(PY) -c "import matplotlib.cbook as c; print(c.get_sample_data('grace_hopper.jpg', asfileobj=False))")

.PHONY: setup demo test bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
ifneq ($(TORCH_INDEX_URL),)
	$(PY) -m pip install --quiet torch==2.13.0 --index-url $(TORCH_INDEX_URL)
endif
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

demo: setup
	$(VENV)/bin/likeness fit $(DEMO_PHOTO) --out $(DEMO_OUT)

test: setup
	$(PY) -m pytest

bench: setup
	mkdir -p out/bench
	for b in $$($(VENV)/bin/likeness bench --list); do $(VENV)/bin/likeness bench $$b --json out/bench/$$b.json || exit 1; done

clean-venv:
	rm -rf $(VENV)
