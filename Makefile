# masklite — one entry point per job. See README.md.
#   make serve   creates .venv/ if missing, installs only what serving needs (no TensorFlow), runs the service
#   make test    adds the test and training dependencies if missing, runs ruff + the whole suite
# Both install only what is missing (a second run installs nothing). MASKLITE_* settings pass through.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
# install the pins of lock file $(1) (requirements/*.txt, from pyproject.toml by `make lock`) that this venv
# lacks; $(2) says what
install_missing = @reqs="$$($(PY) docker/requirements.py $(1) --missing)"; \
	if [ -n "$$reqs" ]; then echo "installing $(2) into $(VENV)/ (once)"; \
	  printf '%s\n' "$$reqs" | $(PY) -m pip install -q -r /dev/stdin; fi

.PHONY: lock setup serve serve-https serve-deps test test-deps check test-fast lint bench bench-ci build-models studies robustness-report reliability fuzz overload

$(PY):
	$(PYTHON) -m venv $(VENV)

serve-deps: | $(PY)  ## the serving dependencies only (requirements/serve.txt): no TensorFlow
	$(call install_missing,requirements/serve.txt,the serving dependencies)

test-deps: | $(PY)  ## serving + test + training + chart + Redis dependencies (requirements/dev.txt: every extra)
	$(call install_missing,requirements/dev.txt,the test and training dependencies)

lock: test-deps  ## after editing pyproject.toml's dependencies: requirements/*.txt again (uv pip compile)
	requirements/compile.sh

setup: test-deps  ## everything (service, training, dev) in .venv/

serve: serve-deps  ## the service with the shipped models and detector on $MASKLITE_HOST:$MASKLITE_PORT (default 127.0.0.1:8000; MASKLITE_HOST=0.0.0.0 for the network)
	$(PY) -m service

serve-https: serve-deps  ## the same on the LAN over HTTPS, for phones: a self-signed certificate made once in data/tls/, LAN URLs + a QR code printed
	MASKLITE_HOST=$${MASKLITE_HOST:-0.0.0.0} MASKLITE_TLS=$${MASKLITE_TLS:-self-signed} $(PY) -m service

check: serve-deps  ## first-run check: models, detector, sha256s, threads, one detection + classification
	$(PY) -m service check

# extra pytest arguments, e.g. PYTEST_ARGS="--random-order-bucket=module" (what .ci/run passes) or
# PYTEST_ARGS="--random-order-seed=123456" to replay the order of a CI run (its header prints the seed)
PYTEST_ARGS ?=

test: test-deps  ## ruff + the full suite, as CI runs it
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast:  ## skip docker, browser and slow tests (under 2 minutes on a quiet 2-core machine)
	$(PY) -m pytest -m "not docker and not browser and not slow" $(PYTEST_ARGS)

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench:  ## classifier + pipeline + HTTP + load benchmarks (~4 min); prints tables, writes benchmarks/
	$(PY) -m bench

bench-ci:  ## waits <= 3 min for load avg < 1.0, then a short /v1/benchmark job (~1-2 min); appends benchmarks/history.jsonl; fails only on ratios, never on noise
	$(PY) -m bench.ci

build-models:  ## prepare -> train -> export -> evaluate, writes models/
	$(PY) -m training build

robustness-report:  ## per-layer weight robustness of the shipped models -> reports/robustness.md + PNGs
	$(PY) -m robustness report --workers 2

reliability:  ## hardening tests in the long profile (fuzz >= 1,000 cases, 30 s overload, ...) -> RELIABILITY.md (~15 min)
	$(PY) tools/reliability_report.py --profile long $(ARGS)

fuzz:  ## schemathesis against /openapi.json of a real server, long profile (>= 1,000 cases)
	MASKLITE_HARDENING_PROFILE=long $(PY) -m pytest tests/hardening/test_fuzz.py -rs

overload:  ## 200 concurrent clients for 30 s on loopback, long profile
	MASKLITE_HARDENING_PROFILE=long $(PY) -m pytest tests/hardening/test_overload.py -rs
