# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed-stamp
# uv uses this machine's Python (the venv's), never one it would download.
export UV_PYTHON_DOWNLOADS := never
# e2fsprogs: each run's capped filesystem (mkfs.ext4); python3: the unprivileged-user test;
# slirp4netns: the opt-in network that cannot reach the host (agent_sandbox/netjail.py);
# postgresql: the job store's PostgreSQL tests start a throwaway cluster.
APT_PACKAGES := bubblewrap chromium e2fsprogs postgresql python3 slirp4netns
# The test lanes (tests/conftest.py marks each test): test-fast runs neither Docker, Modal nor
# Chromium, nor whole agent runs, nor installs.
FAST := not docker and not modal and not browser and not agent and not dist and not hostile and not postgres

.PHONY: install system-packages docker-engine run demo lint docs lock test test-fast test-live \
	test-modal-live bench clean

install: system-packages $(STAMP)

# Debian packages the sandbox and the browser tests need; installed only when missing.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# The venv holds exactly uv.lock, the one source of versions (the library, the web app, every
# extra, the lock's own tool): `uv sync --locked` installs it, verifying each file's hash, removes
# whatever is not in it, and refuses a lock that no longer matches the pyproject files.
$(STAMP): uv.lock pyproject.toml web/pyproject.toml | $(UV)
	@$(UV) sync --locked --all-packages --all-extras \
		|| { echo "make install: uv sync failed (when uv.lock no longer matches a pyproject.toml: make lock)" >&2; exit 1; }
	touch $(STAMP)

# The bootstrap: the venv, and in it the uv release uv.lock names (uv sync keeps it from then on).
$(UV):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "uv==$$($(PY) scripts/locked_version.py uv)"

# Update uv.lock after a change to a pyproject.toml (LOCK_ARGS=--upgrade: every package to its
# newest release allowed; LOCK_ARGS="--upgrade-package pandas": one), then the sandbox's list.
lock: | $(UV)
	$(UV) lock $(LOCK_ARGS)
	$(PY) scripts/sandbox_requirements.py --write

run: install
	$(PY) -m frontend

demo: install
	$(PY) -m agent_sandbox run --output /tmp/agent-sandbox-demo samples/plate_reader.csv

# ruff and mypy (rules and files in pyproject.toml), the sandbox's package list against uv.lock,
# and the README's settings tables against their declarations.
lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) scripts/sandbox_requirements.py --check
	$(PY) -m agent_sandbox.settings --check README.md

# Regenerate the README's settings tables from the declarations in the code.
docs: install
	$(PY) -m agent_sandbox.settings --write README.md

test: install lint docker-engine
	$(PY) -m pytest -q -ra

# Day-to-day: the unit tests, the local backend's conformance tests and the web app's tests,
# without Docker, Modal or Chromium (the lanes: README, Tests).
test-fast: install
	$(PY) -m pytest -q -ra -m "$(FAST)"

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

# ydata-profiling, bench_playbook.py's comparison, runs in a venv of its own: it caps pandas,
# numpy and matplotlib below the releases of uv.lock, so it cannot share the project's.
bench: install docker-engine
	test -x .venv-bench/bin/python || { $(PYTHON) -m venv .venv-bench && .venv-bench/bin/pip install -q ydata-profiling; }
	for b in bench/bench_*.py; do YDATA_PYTHON=.venv-bench/bin/python $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .venv-bench outputs .pytest_cache
