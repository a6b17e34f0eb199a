# Footfall's two everyday commands live in the README; this file holds their details.
VENV ?= .venv
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the test suite drives for real: a headless browser and its driver; the guest
# network of the namespace tests (nftables, dnsmasq, DHCP clients, arping, openNDS with legacy
# iptables, php-cli for openNDS's FAS levels 2/3); the IEEE OUI registry; the deploy checks
# (shellcheck, systemd-analyze, nginx as the HTTPS front, hostapd reading its rendered file).
# dnsmasq-base has no service; the tests run their own nginx and hostapd never starts here, so the
# packaged services are masked before installing.
TEST_DEB := chromium chromium-driver iproute2 nftables conntrack dnsmasq-base udhcpc isc-dhcp-client arping iptables opennds php-cli \
	ieee-data shellcheck systemd nginx hostapd
BENCH_DEB := wrk

.PHONY: test bench bench-activation bench-signin bench-verify bench-segments bench-appliance bench-gateway bench-collector bench-panel bench-login bench-sync bench-chain bench-central-read bench-purge field-day demo deb-test deb-bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev,central]'
	touch $@

deb-test:
	@missing=$$(for p in $(TEST_DEB); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) systemctl mask opennds.service nginx.service hostapd.service >/dev/null 2>&1 || true; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

deb-bench:
	@missing=$$(for p in $(BENCH_DEB); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Two workers, a file at a time on one worker (its module fixtures and namespaces stay together);
# the longest files start first, in the order tests/conftest.py gives them (xdist would otherwise
# send the files with the most tests first, and the one-test field day last). TEST_WORKERS=0 runs
# in one process.
TEST_WORKERS ?= 2
test: $(VENV)/.installed deb-test
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

bench: $(VENV)/.installed deb-bench
	$(VENV)/bin/python tests/perf/bench_portal.py

# Builds a guest network in namespaces: needs root.
bench-gateway: $(VENV)/.installed deb-test
	$(SUDO) $(VENV)/bin/python tests/perf/bench_gateway.py

# Replay runs as anyone; the live and memory parts build namespaces and need root.
bench-collector: $(VENV)/.installed deb-test
	$(SUDO) $(VENV)/bin/python tests/perf/bench_collector.py

bench-activation: $(VENV)/.installed
	$(VENV)/bin/python tests/perf/bench_activation.py

bench-panel: $(VENV)/.installed
	$(VENV)/bin/python tests/perf/bench_panel.py

bench-signin: $(VENV)/.installed
	$(VENV)/bin/python tests/perf/bench_signin.py

# Issue 11: sign-in to the code page with a 2-second SMS provider, beside the unverified submit.
bench-verify: $(VENV)/.installed
	$(VENV)/bin/python tests/perf/bench_verify.py

bench-login: $(VENV)/.installed
	$(VENV)/bin/python tests/perf/bench_login.py

# PostgreSQL: FOOTFALL_TEST_DSN when set, else a throwaway server of its own (as the tests).
bench-sync: $(VENV)/.installed deb-test
	$(VENV)/bin/python tests/perf/bench_sync.py

# Issue 18: 200 enrolled stores pushing signed batches at once into one central store (default workers).
bench-chain: $(VENV)/.installed deb-test
	$(VENV)/bin/python tests/perf/bench_chain.py

# Issue 18: the central's read API at 1,000,000 people and 10,000,000 visits (PostgreSQL as bench-sync).
bench-central-read: $(VENV)/.installed deb-test
	$(VENV)/bin/python tests/perf/bench_central_read.py

# Issue 18: the purge dropping a month of visits beside a DELETE of its rows; migration 0008's time (PostgreSQL as bench-sync).
bench-purge: $(VENV)/.installed deb-test
	$(VENV)/bin/python tests/perf/bench_purge.py

# Issue 18: an incremental segment run after 15 minutes of traffic, beside the full recompute.
bench-segments: $(VENV)/.installed
	$(VENV)/bin/python tests/perf/bench_segments.py

# Issue 18: portal after load + collector at 50,000 devices + scheduler, together (namespaces: root).
bench-appliance: $(VENV)/.installed deb-test
	$(SUDO) $(VENV)/bin/python tests/perf/bench_appliance.py

# The field day of issue 13 at full length (about 7 minutes; namespaces: root). `make test` runs it compressed.
field-day: $(VENV)/.installed deb-test
	$(SUDO) env FOOTFALL_FIELD_DAY=full $(VENV)/bin/python -m pytest -q -s tests/e2e/test_field_day.py

demo: $(VENV)/.installed
	$(VENV)/bin/footfall demo

clean:
	rm -rf $(VENV) .demo .pytest_cache tests/artifacts
