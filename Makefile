# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint format venv

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py create_local_admin
	$(BIN)/python manage.py load_demo_data --if-empty
	$(BIN)/python manage.py load_demo_campaign --if-empty
	$(BIN)/honcho start

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# `make bench BENCHES=signup` runs one; each prints its figures against a baseline.
BENCHES ?= admin_changelist signup import dns_checks send events health performance_page
bench: $(STAMP)
	for bench in $(BENCHES); do $(BIN)/python bench/$$bench.py || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
