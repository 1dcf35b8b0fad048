# Two commands do all set-up on a fresh machine with Python 3.11:
#   make demo   create .venv, install spos, fetch the built-in dataset, run the pipeline
#   make test   create .venv, install spos with test extras, run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA := data

.PHONY: demo test install data clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

data:
	bash scripts/fetch_fashion_mnist.sh $(DATA)

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# A finished demo is not retrained: `make demo` again reprints its summary (stages are skipped).
demo: $(STAMP) data
	$(BIN)/spos pipeline --config configs/pipeline.yaml --out runs/demo --resume

clean:
	rm -rf $(VENV) runs
