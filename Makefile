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
VERSION := $(shell sed -n 's/^version: *//p' galaxy.yml)
RELEASE := $(BUILD)/release
TARBALL := $(RELEASE)/meshops-istio-$(VERSION).tar.gz
# ansible-test runs on the unpacked tarball outside this checkout (git-ignored paths are invisible to it).
RELEASE_DIR ?= $(or $(TMPDIR),/tmp)/meshops-istio-release-$(notdir $(CURDIR))
TOOLS := $(CURDIR)/.venv-release
# The ansible-core releases the collection supports (meta/runtime.yml requires_ansible), each tested in its
# own venv .venv-core-X.Y (.ci/requirements/ansible-core-X.Y.txt) on a controller Python that release
# supports: 2.16 and 2.17 run on 3.10-3.12, 2.18 and 2.19 on 3.11-3.13, 2.20 on 3.12-3.14.
CORE_VERSIONS := 2.16 2.17 2.18 2.19 2.20
CORE_PYTHON_2.16 := 3.10
CORE_PYTHON_2.17 := 3.12
CORE_PYTHON_2.18 := 3.13
CORE_PYTHON_2.19 := 3.11
CORE_PYTHON_2.20 := 3.13
# An interpreter of Python $(1): pyenv's, else the system's.
# The release checks see only the unpacked tarball: not the checkout's collection link nor tests/ (kubesim).
ISOLATED := env -u ANSIBLE_COLLECTIONS_PATH -u PYTHONPATH
find_python = $(firstword $(wildcard $(HOME)/.pyenv/versions/$(1).*/bin/python$(1) /usr/local/bin/python$(1) /usr/bin/python$(1)))
export PATH := $(BIN):$(PATH)
export PYTHONPATH := $(CURDIR)/tests
export ANSIBLE_COLLECTIONS_PATH := $(BUILD)
unexport ANSIBLE_COLLECTIONS_PATHS

.PHONY: all venv kubectl prometheus chromium collection sanity lint unit test-lowest integration test demo bench soak clean \
	dist release-venvs release-check release-tests galaxy-import docs-lint changelog-lint lint-all ee-context

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

# A real headless browser for the report's test (tests/integration/test_report.py renders the HTML report,
# keeps a screenshot in tests/artifacts/ and fails on any console error): Debian's chromium.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "chromium not found: installing Debian's chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

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

# ansible-lint installs the collection it lints into $ANSIBLE_HOME/collections when ANSIBLE_COLLECTIONS_PATH is set:
# keep that copy inside this checkout's .build, never in ~/.ansible where it would shadow other checkouts.
LINT_ENV := ANSIBLE_HOME=$(BUILD)/ansible-home

lint: venv collection
	$(LINT_ENV) $(BIN)/ansible-lint --profile production roles playbooks

unit: venv collection
	$(BIN)/python -m pytest -q tests/unit

# The lowest versions requirements.txt allows (kubernetes 24.2.0, urllib3 1.26, ...): the unit tests and the
# client's integration tests, in a second venv.
test-lowest: $(LOWEST)/.installed collection kubectl
	$(LOWEST)/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/integration/test_cluster_client.py

integration: venv collection kubectl prometheus chromium
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests/integration tests/kubesim/tests

test: venv collection kubectl prometheus chromium
	$(MAKE) sanity
	$(MAKE) lint
	$(MAKE) unit
	$(MAKE) test-lowest
	$(MAKE) integration

# make demo SCENARIO=helm: the Helm upgrade 1.29.6 -> 1.30.3 on the helm scenario
SCENARIO ?= blog
demo: venv collection kubectl
	$(BIN)/python tests/demo.py --scenario $(SCENARIO)

bench: venv collection kubectl
	bench/run

# The soak (issue 19): upgrade -> rollback -> upgrade cycles under random faults on the large scenario for
# SOAK_MINUTES (default 30); prints cycles, faults injected, invariant violations (must be 0), slowest phase.
SOAK_MINUTES ?= 30
soak: venv collection kubectl
	$(BIN)/python tests/integration/soak.py --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

# ---- release: what Galaxy, Automation Hub and an AWX administrator get (issue 15) ----------------------

# The tarball users install, built from a copy of this checkout's files that git sees (tracked, or new and not
# ignored): what earlier targets leave behind (tests/artifacts, istio-upgrade-reports, .build) never ships.
# galaxy.yml's build_ignore then leaves out what is not the users'.
dist: venv
	@mkdir -p $(RELEASE) && rm -f $(RELEASE)/meshops-istio-*.tar.gz
	@rm -rf $(BUILD)/dist-src && mkdir -p $(BUILD)/dist-src
	git ls-files -z --cached --others --exclude-standard | \
	  $(BIN)/python -c 'import os, sys; sys.stdout.buffer.write(b"".join(p + b"\0" for p in sys.stdin.buffer.read().split(b"\0") if p and os.path.lexists(p)))' | \
	  tar --null --no-recursion -T - -cf - | tar -xf - -C $(BUILD)/dist-src
	$(BIN)/ansible-galaxy collection build --force --output-path $(RELEASE) $(BUILD)/dist-src

$(TOOLS)/.installed: .ci/requirements/release-tools.txt
	@py='$(call find_python,3.11)'; test -n "$$py" || { echo "Python 3.11 not found (pyenv or /usr/bin)"; exit 1; }; \
	  rm -rf $(TOOLS) && $$py -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --disable-pip-version-check -r .ci/requirements/release-tools.txt
	touch $@

.venv-core-%/.installed: .ci/requirements/ansible-core-%.txt .ci/requirements/units.txt
	@py='$(call find_python,$(CORE_PYTHON_$*))'; \
	  test -n "$$py" || { echo "Python $(CORE_PYTHON_$*) (for ansible-core $*) not found (pyenv or /usr/bin)"; exit 1; }; \
	  rm -rf .venv-core-$* && $$py -m venv .venv-core-$*
	.venv-core-$*/bin/pip install -q --disable-pip-version-check -r .ci/requirements/ansible-core-$*.txt
	@# ansible-test bootstraps pip into its sanity venvs with get-pip.py from a host we cannot reach: give it
	@# the offline stand-in under every pip version this ansible-test may ask for.
	@mkdir -p $$HOME/.ansible/test/cache && for pip in $$(grep -ho "pip='[0-9.]*'" \
	    .venv-core-$*/lib/python*/site-packages/ansible_test/_internal/python_requirements.py | tr -dc "0-9.\n'" | tr -d "'"); do \
	  cp .ci/ansible_test_get_pip.py $$HOME/.ansible/test/cache/get_pip_$${pip//./_}.py; done
	touch $@

# awx.awx and kubernetes.core, from the `ansible` package (PyPI), for the AWX check and the whole-repo lint.
$(RELEASE)/collections/.installed: .ci/requirements/ansible-collections.txt $(TOOLS)/.installed
	@rm -rf $(RELEASE)/collections $(RELEASE)/wheels && mkdir -p $(RELEASE)/collections $(RELEASE)/wheels
	$(TOOLS)/bin/pip download -q --disable-pip-version-check --no-deps --require-hashes \
	  -r .ci/requirements/ansible-collections.txt -d $(RELEASE)/wheels
	$(TOOLS)/bin/python .ci/extract_collections.py $(RELEASE)/wheels/ansible-*.whl $(RELEASE)/collections \
	  awx.awx kubernetes.core
	touch $@

release-venvs: $(TOOLS)/.installed $(foreach v,$(CORE_VERSIONS),.venv-core-$(v)/.installed) \
	$(RELEASE)/collections/.installed

# release-sanity-X.Y / release-units-X.Y are pattern rules (not .PHONY: make skips implicit rules for those).
# The unpacked tarball as ansible-test wants it: <dir>/ansible_collections/meshops/istio (a fresh copy per use).
define unpack
rm -rf $(1) && mkdir -p $(1)/ansible_collections/meshops/istio && \
  tar -xzf $(TARBALL) -C $(1)/ansible_collections/meshops/istio
endef

release-sanity-%: .venv-core-%/.installed
	@$(call unpack,$(RELEASE_DIR)/sanity-$*)
	cd $(RELEASE_DIR)/sanity-$*/ansible_collections/meshops/istio && $(ISOLATED) PATH=$(CURDIR)/.venv-core-$*/bin:$$PATH \
	  $(CURDIR)/.venv-core-$*/bin/ansible-test sanity --python $(CORE_PYTHON_$*) --color no --skip-test shellcheck

release-units-%: .venv-core-%/.installed
	@$(call unpack,$(RELEASE_DIR)/units-$*)
	cd $(RELEASE_DIR)/units-$*/ansible_collections/meshops/istio && $(ISOLATED) PATH=$(CURDIR)/.venv-core-$*/bin:$$PATH \
	  $(CURDIR)/.venv-core-$*/bin/ansible-test units --python $(CORE_PYTHON_$*) --color no

# Galaxy's import and Automation Hub's (their ansible-test step needs a container engine: run apart, above).
galaxy-import: $(TOOLS)/.installed
	cd $(RELEASE) && $(ISOLATED) PATH=$(TOOLS)/bin:$$PATH $(TOOLS)/bin/python $(CURDIR)/.ci/galaxy_import.py --config $(CURDIR)/.ci/galaxy-importer/galaxy.cfg $(TARBALL)
	cd $(RELEASE) && $(ISOLATED) PATH=$(TOOLS)/bin:$$PATH $(TOOLS)/bin/python $(CURDIR)/.ci/galaxy_import.py --config $(CURDIR)/.ci/galaxy-importer/automation-hub.cfg $(TARBALL)

docs-lint: $(TOOLS)/.installed
	@$(call unpack,$(RELEASE_DIR)/docs)
	cd $(RELEASE_DIR)/docs/ansible_collections/meshops/istio && $(ISOLATED) PATH=$(TOOLS)/bin:$$PATH \
	  $(TOOLS)/bin/antsibull-docs lint-collection-docs --plugin-docs .

changelog-lint: $(TOOLS)/.installed
	$(TOOLS)/bin/antsibull-changelog lint

# ansible-lint on the whole repository (bench's playbook needs kubernetes.core).
lint-all: venv collection $(RELEASE)/collections/.installed
	$(LINT_ENV) ANSIBLE_COLLECTIONS_PATH=$(BUILD):$(RELEASE)/collections $(BIN)/ansible-lint --profile production

# tests/release: the tarball's content and its unit tests' independence, ansible-doc of everything on every
# ansible-core, the playbooks imported from the installed collection, the execution environment, AWX.
release-tests: release-venvs
	$(ISOLATED) MESHOPS_RELEASE_TARBALL=$(TARBALL) MESHOPS_RELEASE_CORES="$(foreach v,$(CORE_VERSIONS),$(v)=$(CURDIR)/.venv-core-$(v))" \
	  MESHOPS_RELEASE_COLLECTIONS=$(RELEASE)/collections PATH=$(TOOLS)/bin:$$PATH \
	  $(TOOLS)/bin/python -m pytest -q -p no:cacheprovider tests/release

release-check: release-venvs
	$(MAKE) dist
	$(MAKE) release-tests
	$(MAKE) galaxy-import
	$(MAKE) docs-lint
	$(MAKE) changelog-lint
	$(MAKE) lint-all
	$(MAKE) $(foreach v,$(CORE_VERSIONS),release-sanity-$(v))
	$(MAKE) $(foreach v,$(CORE_VERSIONS),release-units-$(v))

# The execution environment's build context (.build/ee/context), from the built tarball; then
# `docker|podman build --build-arg ISTIO_VERSIONS=... --build-arg HELM_VERSION=... .build/ee/context`.
ee-context: dist $(TOOLS)/.installed
	@rm -rf $(BUILD)/ee && mkdir -p $(BUILD)/ee
	cp $(TARBALL) $(BUILD)/ee/meshops-istio.tar.gz
	$(TOOLS)/bin/ansible-builder create -f execution-environment.yml -c $(BUILD)/ee/context --output-filename Containerfile

clean:
	rm -rf $(BUILD) $(VENV) $(TOOLS) .venv-core-*
