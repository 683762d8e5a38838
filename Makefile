# Two commands on a fresh machine: `make demo` (set up, run the semi-supervised pipeline on
# digits-LT, print base vs semi-supervised results) and `make test` (set up, run the test
# suite). Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint clean-demo

$(BIN)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@

setup: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/python run.py --config=configs/digits_lt_semi.py --workdir=workdirs/demo_digits_lt_semi

test: $(BIN)/.installed
	$(BIN)/python -m pytest -n 2 --dist worksteal -q

lint: $(BIN)/.installed
	$(BIN)/pip install -q ruff && $(BIN)/ruff check .

clean-demo:
	rm -rf workdirs/demo_digits_lt_semi
