# The two commands of the README:
#   make demo   runs a whole Depot network on this machine with faults, and checks the result
#   make test   runs lint, type checks and the test suite (what .ci/run calls)
# Both set up what they need first (scripts/setup.sh).

PY := .venv/bin/python
export PATH := $(CURDIR)/.tools:$(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup demo test lint typecheck pytest bench clean

setup:
	@scripts/setup.sh

demo: setup
	$(PY) scripts/demo.py

test: setup lint typecheck pytest

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck:
	.venv/bin/mypy

pytest:
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# The libtorrent baseline of bench_swarm runs in its own environment.
LT_PY := .tools/ltvenv/bin/python
$(LT_PY):
	python3 -m venv .tools/ltvenv
	.tools/ltvenv/bin/pip install --quiet --disable-pip-version-check libtorrent

bench: setup $(LT_PY)
	$(PY) scripts/bench_gas.py
	$(PY) scripts/bench_pieces.py
	$(PY) scripts/bench_transport.py
	$(PY) scripts/bench_dht.py
	$(PY) scripts/bench_swarm.py
	$(PY) scripts/bench_prover.py
	$(PY) scripts/bench_market.py
	$(PY) scripts/bench_auditor.py

clean:
	rm -rf .venv .tools .stamps contracts/build
