# Hookbus: `make run` to run it, `make test` to test it.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KUSTOMIZE := .cache/bin/kustomize

.PHONY: run test lint chaos bench profile token receiver install kafka clean reseal secret-key client

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Fetch the Kafka broker's jars through Maven (once; cached under .cache/).
kafka: $(STAMP)
	$(PY) -m devtools.broker fetch

## Start Kafka, create the topics, run ingest, router and deliverer; Ctrl-C stops all.
run: $(STAMP)
	$(PY) -m devtools.stack

## Print an API token that expires: make token APP=app_1 (or SCOPE=admin; TTL=8h, 1h default).
token: $(STAMP)
	@$(PY) -m devtools.token $(if $(APP),--app $(APP)) $(if $(SCOPE),--scope $(SCOPE)) $(if $(TTL),--ttl $(TTL))

## Re-seal every webhook's secrets under the first key of HOOKBUS_SECRET_KEYS, online
## (make run's development key when unset); safe to interrupt and run again. RATE=200/s.
reseal: $(STAMP)
	@if [ -z "$$HOOKBUS_SECRET_KEYS" ] && [ -f .run/secret-keys ]; then \
	  echo "make reseal: HOOKBUS_SECRET_KEYS is not set: using make run's development key (.run/secret-keys)" >&2; \
	  export HOOKBUS_SECRET_KEYS="$$(cat .run/secret-keys)"; fi; \
	$(PY) -m services.reseal $(if $(RATE),--rate $(RATE))

## Print a new sealing key entry (id:base64key) for HOOKBUS_SECRET_KEYS: make secret-key ID=k2
secret-key: $(STAMP)
	@$(PY) -m services.reseal new-key $(ID)

## A Python client generated from /openapi.json (openapi-python-client, pinned): make client
## [URL=http://127.0.0.1:8080] [OUT=dir]; without URL the document is built from the code.
client: $(STAMP)
	$(PY) -m devtools.openapi_client $(if $(URL),--url $(URL)) $(if $(OUT),--out $(OUT))

## A local endpoint that prints what it receives: make receiver [SECRET=whsec_...]
receiver: $(STAMP)
	$(PY) -m devtools.receiver --port $(or $(PORT),9000) $(if $(SECRET),--secret '$(SECRET)')

## kustomize, to render deploy/k8s in the tests (built from the Go module proxy).
$(KUSTOMIZE):
	GOBIN=$(CURDIR)/.cache/bin go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0

## The whole suite; integration tests start their own broker.
test: $(STAMP) kafka $(KUSTOMIZE)
	$(PY) -m pytest $(PYTEST_ARGS)

## Unused names, undefined names, syntax errors.
lint: $(STAMP)
	$(VENV)/bin/ruff check .

## Faults while 10,000 events flow; prints published, delivered, lost, duplicates.
chaos: $(STAMP) kafka
	$(PY) -m devtools.chaos --events $(or $(EVENTS),10000)

## Speed against same-run baselines: bench/results/latest.json, a dated copy, latest.png.
bench: $(STAMP) kafka
	$(PY) -m bench.run $(if $(QUICK),--quick)

## Ingest, router and deliverer under pyinstrument during the bench's burst; CPU per process in cpu.json.
profile: $(STAMP) kafka
	$(PY) -m bench.profile

clean:
	rm -rf .run .pytest_cache .hypothesis
