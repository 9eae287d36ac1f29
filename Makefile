# Two commands do all set-up on a fresh machine:
#   make demo   - create .venv, install, run the agent offline on an example prompt
#   make test   - install the locked test environment (constraints/test.txt), check the import layers, run the whole suite
#   make studio - run the agent in `langgraph dev` for LangGraph Studio (installs the studio extra)
# And for maintainers:
#   make lock        - re-resolve constraints/test.txt (with hashes) from pyproject.toml's ranges
#   make test-latest - run the suite in .venv-latest on the newest versions those ranges allow
#   make lock-gpu    - re-resolve constraints/gpu.txt, the training stack for a CUDA machine
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_PROMPT ?= A 1990s travel-magazine cover in front of the Eiffel Tower, title "PARIS"
DEMO_OUT ?= demo-out
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export LANGSMITH_TRACING = false
# The lock is resolved for CPython 3.11 on x86-64 Linux (CI's machine). torch is the CPU build,
# found in /opt/wheels where the machine ships it, else on the PyTorch wheel index.
LOCK ?= constraints/test.txt
LOCK_PYTHON ?= 3.11
LOCK_PLATFORM ?= x86_64-manylinux_2_28
UV_VERSION ?= 0.13.9
TORCH_FIND_LINKS ?= $(or $(wildcard /opt/wheels),https://download.pytorch.org/whl/torch/)
LATEST_VENV ?= .venv-latest

.PHONY: demo test test-latest lock lock-gpu install install-test bench studio clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip

install: $(PY)
	$(PIP) install -q -e .

# Exactly the locked versions, every file checked against its hash; then our package alone.
install-test: $(PY)
	$(PIP) install -q --require-hashes --find-links $(TORCH_FIND_LINKS) -r $(LOCK)
	$(PIP) install -q --no-deps -e .
	$(PIP) check

lock: $(PY)
	$(PIP) install -q uv==$(UV_VERSION)
	$(VENV)/bin/uv pip compile pyproject.toml --extra test --generate-hashes --quiet \
		--python-version $(LOCK_PYTHON) --python-platform $(LOCK_PLATFORM) \
		--find-links $(TORCH_FIND_LINKS) --override constraints/torch-cpu.txt \
		--custom-compile-command "make lock" -o $(LOCK)

demo: install
	$(VENV)/bin/genevolve-graph run '$(DEMO_PROMPT)' --out $(DEMO_OUT)

# The training stack on a CUDA machine (CPython 3.12, the torch/transformers of constraints/gpu-stack.txt).
lock-gpu: $(PY)
	$(PIP) install -q uv==$(UV_VERSION)
	$(VENV)/bin/uv pip compile pyproject.toml --extra train --extra service --generate-hashes --quiet \
		--python-version 3.12 --python-platform x86_64-manylinux_2_28 --override constraints/gpu-stack.txt \
		--custom-compile-command "make lock-gpu" -o constraints/gpu.txt

# lint-imports first: the layer contracts of docs/architecture.md, in a second (tests/test_architecture.py
# also shows that a wrong import breaks them).
test: install-test
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Drift shows up here rather than in CI: a fresh venv, the newest versions pyproject.toml allows
# (torch stays the CPU build of the lock; the newest CUDA build would pull gigabytes).
test-latest:
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q -U pip
	$(LATEST_VENV)/bin/python -m pip install -q --find-links $(TORCH_FIND_LINKS) -r constraints/torch-cpu.txt
	$(LATEST_VENV)/bin/python -m pip install -q -U --upgrade-strategy eager -e ".[test]" -r constraints/torch-cpu.txt
	$(LATEST_VENV)/bin/python -m pip list --format=freeze > $(LATEST_VENV)/resolved.txt
	$(LATEST_VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

bench: install-test
	$(PY) benchmarks/graph_overhead.py

# LangGraph Studio: a local API server on langgraph.studio.json (langgraph.json plus the SQLite
# trace checkpointer; langgraph.json itself is for deployment); Studio is the hosted page it prints.
# Runs record into GENEVOLVE_TRACE_DB (default: the user's cache folder,
# genevolve-graph/traces.sqlite). STUDIO_ARGS passes more options, e.g. --no-browser.
STUDIO_PORT ?= 2024
STUDIO_ARGS ?=
studio: $(PY)
	$(PIP) install -q -e ".[studio]"
	LANGGRAPH_CLI_NO_ANALYTICS=1 $(VENV)/bin/langgraph dev --config langgraph.studio.json --port $(STUDIO_PORT) $(STUDIO_ARGS)

clean:
	rm -rf $(VENV) $(LATEST_VENV) $(DEMO_OUT) .pytest_cache
