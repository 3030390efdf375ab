# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# e2fsprogs: each run's capped filesystem (mkfs.ext4); python3: the unprivileged-user test;
# slirp4netns: the opt-in network that cannot reach the host (agent_sandbox/netjail.py).
APT_PACKAGES := bubblewrap chromium e2fsprogs python3 slirp4netns

.PHONY: install system-packages docker-engine run demo lint docs test test-live test-modal-live bench clean

install: system-packages $(STAMP)

# Debian packages the sandbox and the browser tests need; installed only when missing.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml web/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[playbook,llm,modal,test]' -e ./web
	touch $(STAMP)

run: install
	$(PY) -m frontend

demo: install
	$(PY) -m agent_sandbox run --output /tmp/agent-sandbox-demo samples/plate_reader.csv

# ruff (rules in pyproject.toml), and the README's settings tables against their declarations.
lint: install
	$(PY) -m ruff check .
	$(PY) -m agent_sandbox.settings --check README.md

# Regenerate the README's settings tables from the declarations in the code.
docs: install
	$(PY) -m agent_sandbox.settings --write README.md

test: install lint docker-engine
	$(PY) -m pytest -q -ra

# One real LLM job with whichever of OPENAI_API_KEY / ANTHROPIC_API_KEY is set (not in CI).
test-live: install
	$(PY) -m pytest -q -s live_tests

# The Modal backend against Modal itself (never in CI; costs a few sandbox-minutes): needs
# MODAL_TOKEN_ID and MODAL_TOKEN_SECRET, and no MODAL_SERVER_URL (that is an emulator).
test-modal-live: install
	@[ -n "$$MODAL_TOKEN_ID" ] || { echo "test-modal-live: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"; exit 2; }
	@[ -z "$$MODAL_SERVER_URL" ] || { echo "test-modal-live: unset MODAL_SERVER_URL (it points at an emulator)"; exit 2; }
	AGENT_SANDBOX_MODAL_LIVE=1 $(PY) -m pytest -q -ra tests/live

# The Docker backend's tests need a running engine and the sandbox image; both are
# set up only when missing or out of date, and so are the Modal images the emulator's
# Docker runtime builds from the Modal recipe. AGENT_SANDBOX_SKIP_DOCKER=1 skips them.
docker-engine: install
	@[ "$$AGENT_SANDBOX_SKIP_DOCKER" = 1 ] || { scripts/docker-engine.sh && $(PY) -m modal_emulator.prebuild; }

bench: install docker-engine
	$(PY) -m pip install -q -e '.[playbook,llm,modal,test,bench]' -e ./web
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) outputs .pytest_cache
