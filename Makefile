# Single entry point. `make demo` runs the canary upgrade on the simulated cluster; `make test` runs every test.
SHELL := /bin/bash
PY ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOWEST := $(CURDIR)/.build/lowest-venv
BUILD := $(CURDIR)/.build
# ansible-test ignores files that git ignores, so the sanity copy must live outside this checkout.
SANITY_DIR ?= $(or $(TMPDIR),/tmp)/meshops-istio-sanity-$(notdir $(CURDIR))
COLL := $(BUILD)/ansible_collections/meshops/istio
export PATH := $(BIN):$(PATH)
export PYTHONPATH := $(CURDIR)/tests
export ANSIBLE_COLLECTIONS_PATH := $(BUILD)
unexport ANSIBLE_COLLECTIONS_PATHS

.PHONY: all venv kubectl prometheus collection sanity lint unit test-lowest integration test demo bench clean

all: test

$(STAMP): requirements-test.txt requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-test.txt
	touch $(STAMP)

venv: $(STAMP)

$(LOWEST)/.installed: requirements-lowest.txt
	$(PY) -m venv $(LOWEST)
	$(LOWEST)/bin/pip install -q --disable-pip-version-check -r requirements-lowest.txt
	touch $@

kubectl:
	@command -v kubectl >/dev/null 2>&1 || { \
	  echo "kubectl not found: installing Debian's kubernetes-client"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null; }

# A real Prometheus server for the metric-gate tests (Debian's package; the tests start their own instance).
prometheus:
	@command -v prometheus >/dev/null 2>&1 || { \
	  echo "prometheus not found: installing Debian's prometheus"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

# The collection as Ansible sees it: ansible_collections/meshops/istio (a symlink keeps edits live).
collection:
	@mkdir -p $(dir $(COLL))
	@ln -sfn $(CURDIR) $(COLL)

sanity: venv collection
	@rm -rf $(SANITY_DIR) && mkdir -p $(SANITY_DIR)/ansible_collections/meshops/istio
	@# ansible-test fetches get-pip.py from a host we cannot reach; give it the offline stand-in (pip 24.2 is
	@# what the pinned ansible-core asks for).
	@mkdir -p $$HOME/.ansible/test/cache && cp .ci/ansible_test_get_pip.py $$HOME/.ansible/test/cache/get_pip_24_2.py
	@git ls-files -co --exclude-standard | grep -v -E '^(tests/kubesim|bench|\.ci)/' | \
	  tar -cf - -T - | tar -xf - -C $(SANITY_DIR)/ansible_collections/meshops/istio
	cd $(SANITY_DIR)/ansible_collections/meshops/istio && \
	  $(BIN)/ansible-test sanity --python 3.11 --color no --skip-test shellcheck

lint: venv collection
	$(BIN)/ansible-lint --profile production roles playbooks

unit: venv collection
	$(BIN)/python -m pytest -q tests/unit

# The lowest versions requirements.txt allows (kubernetes 24.2.0, urllib3 1.26, ...): the unit tests and the
# client's integration tests, in a second venv.
test-lowest: $(LOWEST)/.installed collection kubectl
	$(LOWEST)/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/integration/test_cluster_client.py

integration: venv collection kubectl prometheus
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests/integration tests/kubesim/tests

test: venv collection kubectl prometheus
	$(MAKE) sanity
	$(MAKE) lint
	$(MAKE) unit
	$(MAKE) test-lowest
	$(MAKE) integration

demo: venv collection kubectl
	$(BIN)/python tests/demo.py

bench: venv collection kubectl
	bench/run

clean:
	rm -rf $(BUILD) $(VENV)
