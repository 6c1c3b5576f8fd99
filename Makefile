# masklite — one entry point per job. See README.md for the environment variables.
PY      := .venv/bin/python
PIP     := .venv/bin/pip

.PHONY: setup serve test test-fast lint bench bench-ci build-models studies robustness-report reliability fuzz overload

setup:  ## create .venv/ with the service, training and dev dependencies
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[train,dev]'

serve:  ## run the service with the shipped models on $MASKLITE_HOST:$MASKLITE_PORT (default 0.0.0.0:8000)
	$(PY) -m service

test:   ## the full suite, as CI runs it
	$(PY) -m ruff check .
	$(PY) -m pytest

test-fast:  ## skip docker, browser and slow tests
	$(PY) -m pytest -m "not docker and not browser and not slow"

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench:  ## classifier + pipeline + HTTP + load benchmarks (~5 min); prints tables, writes benchmarks/
	$(PY) -m service.bench

bench-ci:  ## waits <= 3 min for load avg < 1.0, then a short /v1/benchmark job (~1-2 min); appends benchmarks/history.jsonl; fails only on ratios, never on noise
	$(PY) -m service.bench.ci

build-models:  ## prepare -> train -> export -> evaluate, writes models/
	$(PY) -m training build

robustness-report:  ## per-layer weight robustness of the shipped models -> reports/robustness.md + PNGs
	$(PY) -m masklite.robustness_cli report --workers 2

reliability:  ## hardening tests in the long profile (fuzz >= 1,000 cases, 30 s overload, ...) -> RELIABILITY.md (~15 min)
	$(PY) tests/hardening/reliability.py --profile long $(ARGS)

fuzz:  ## schemathesis against /openapi.json of a real server, long profile (>= 1,000 cases)
	MASKLITE_HARDENING_PROFILE=long $(PY) -m pytest tests/hardening/test_fuzz.py -rs

overload:  ## 200 concurrent clients for 30 s on loopback, long profile
	MASKLITE_HARDENING_PROFILE=long $(PY) -m pytest tests/hardening/test_overload.py -rs
