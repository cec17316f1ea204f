SHELL := /bin/bash
# The two commands: `make run` starts everything, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_FLAGS := --quiet --disable-pip-version-check

.PHONY: run test install schema bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -r requirements-dev.txt 2> >(grep -v "^WARNING: Location" >&2)
	touch $@

install: $(VENV)/.installed

run: install
	./scripts/run.sh

test: install
	./scripts/ensure_services.sh
	./scripts/test.sh

schema: install
	$(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

bench: install
	./scripts/ensure_services.sh
	$(PY) bench/quota_check.py
	$(PY) bench/recompute.py
	$(PY) bench/slack_webhook.py
	$(PY) bench/llm_gateway.py

clean:
	rm -rf $(VENV) .devdata staticfiles
