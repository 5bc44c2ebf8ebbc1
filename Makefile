# Quick start: `make run` (Guardian on loopback, safe defaults) and `make test` (the whole suite).
# Both create .venv and install what they need; Debian packages are installed with apt-get
# (as root, or through sudo) only when missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the tests use: real DNS clients and peers, netns tooling, and the browser
# the dashboard tests drive (Playwright for Python with Debian's chromium, never `playwright install`).
TEST_DEBS := dnsutils knot-dnsutils dnsperf dnsmasq-base iproute2 openssl ieee-data libpcap0.8 util-linux chromium systemd lintian

.PHONY: run test lint bench venv test-debs clean deb

define apt_install
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

# Runtime: the OUI database (device makers) and libpcap (scapy's capture filters).
RUN_DEBS := python3-venv ieee-data libpcap0.8

$(BIN)/.installed: setup.cfg pyproject.toml
	$(call apt_install,$(RUN_DEBS))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[fast]'
	touch $@

$(BIN)/.test-installed: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[fast,test]'
	touch $@

venv: $(BIN)/.installed

run: $(BIN)/.installed
	$(BIN)/guardian run --config systemd/guardian.local.yaml

test-debs:
	$(call apt_install,$(TEST_DEBS))

lint: $(BIN)/.test-installed
	$(BIN)/ruff check guardian tests
	$(BIN)/lint-imports
	$(BIN)/mypy

test: test-debs $(BIN)/.test-installed lint
	$(BIN)/pytest -q

bench: test-debs $(BIN)/.test-installed
	$(BIN)/python tests/perf/bench_mix.py --seconds 5 --repeat 1
	$(BIN)/python tests/perf/bench_dns.py --seconds 5
	$(BIN)/python tests/perf/bench_policy.py --seconds 5
	$(BIN)/python tests/perf/bench_matcher.py
	$(BIN)/python tests/perf/bench_store.py
	$(BIN)/python tests/perf/bench_soak.py --minutes 6
	$(BIN)/python tests/perf/bench_web.py --rows 1000000

# The Debian package: dist/guardian_VERSION_all.deb (README: Install, "From the .deb").
deb: $(BIN)/.test-installed
	PYTHON=$(BIN)/python bash systemd/build-deb.sh dist

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
