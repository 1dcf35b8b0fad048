# Two commands do all set-up on a fresh machine with Python 3.11:
#   make demo   create .venv, install spos, fetch the built-in dataset, run the pipeline
#   make test   create .venv, install spos with test extras, run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA := data

.PHONY: demo test fidelity install data clean mutants

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Fashion-MNIST into data/fashion-mnist (apt-get download + dpkg-deb -x, no root); kept if there.
data: $(STAMP)
	$(BIN)/spos data fetch --dir $(DATA)

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# Mutation testing (not part of `make test`: hours on 2 cores). First the hand-made mutants of
# the numerics (tests/mutants/*.patch: each applied to a temporary copy of src/ must make its
# named tests fail), then mutmut's tool-made mutants of the pure modules, one module at a time
# against its own fast tests ([tool.mutmut.modules] in pyproject.toml; results are kept in
# mutants/, so a second call reruns only what changed). `make mutants MODULES="space genes"`
# limits the second part to some modules.
mutants: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,mutation]'
	$(BIN)/python tests/mutants/run.py
	$(BIN)/python tests/mutants/mutmut_modules.py $(MODULES)

# A finished demo is not retrained: `make demo` again reprints its summary (stages are skipped).
demo: $(STAMP) data
	$(BIN)/spos pipeline --config fashion-mnist --out runs/demo --resume

# How well the demo's supernet ranks archs: 16 random archs under the search's budget (every arch
# it could pick; `--min-macs 0.9M --max-macs 1.2M`: the supernet's validation window) + the winner,
# each trained from scratch for 2 seeds with the pipeline's own subnet recipe (5 epochs; a
# 2-epoch recipe does not rank like it: docs/fidelity.md). Stand-alone results are stored once in
# runs/demo/spos-store.sqlite; docs/fidelity/spos-store.sqlite holds the measured ones (copy it
# there first to skip the ~50 min of training).
fidelity: demo
	$(BIN)/spos fidelity --pipeline runs/demo --out runs/demo/fidelity

clean:
	rm -rf $(VENV) runs
