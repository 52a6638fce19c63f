# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# A local CPU wheel of torch lives here on our machines; elsewhere pip uses PyPI's CPU wheel.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP := $(PY) -m pip install -q $(FIND_LINKS)
DEMO_OUT ?= runs/demo

.PHONY: demo test setup clean bench bench-full browser

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) "torch==2.13.0"
	$(PIP) -e ".[test,app,report]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/negationclip demo --out $(DEMO_OUT)

# Headless Chromium for the browser tests (tests/apps/test_explore_browser.py): Debian's chromium
# and chromium-driver, installed with apt-get where missing and we are root (CI); else they skip.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium and chromium-driver (browser tests)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || echo "warning: could not install chromium; the browser tests will skip"; \
	else echo "note: chromium/chromedriver missing and not root: the browser tests will skip"; fi

test: setup browser
	$(PY) -m pytest -q tests

# Every speed script (each: interleaved runs, median [min-max], fraction of the matmul peak,
# load average; JSON in benchmarks/results/), then one table: benchmarks/results/summary.md.
# More runs: make bench BENCH_ARGS="--runs 5". Sized for about 19 minutes on a quiet 2-core machine (each script run alone there, 2026-11-30)
# (generate_throughput also runs its replica arms: 1 vs 4 servers, one killed, ~2 minutes).
BENCHES := eval_speed encode_text train_speed generate_calls generate_throughput negworld_render train_scale
BENCH_ARGS ?=
# preprocess: under half a minute. explore_speed (10,000 images, ~1 min per embedding run) and
# methods_negworld (seven trainings per round, the README's table) take minutes each:
# `make bench-full` runs them too.
BENCHES += preprocess
BENCHES_FULL := explore_speed methods_negworld

bench-full: BENCHES += $(BENCHES_FULL)
bench-full: bench

bench: setup
	for b in $(BENCHES); do $(PY) benchmarks/$$b.py $(BENCH_ARGS) || exit 1; done
	$(PY) benchmarks/summary.py

clean:
	rm -rf $(VENV) runs build *.egg-info
