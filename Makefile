# Two commands do all set-up on a fresh machine:
#   make demo   - create .venv, install, run the agent offline on an example prompt
#   make test   - install with the test extras and run the whole suite
#   make studio - run the agent in `langgraph dev` for LangGraph Studio (installs the studio extra)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_PROMPT ?= A 1990s travel-magazine cover in front of the Eiffel Tower, title "PARIS"
DEMO_OUT ?= demo-out
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export LANGSMITH_TRACING = false

.PHONY: demo test install install-test bench studio clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip

install: $(PY)
	$(PIP) install -q -e .

install-test: $(PY)
	$(PIP) install -q torch==2.13.0   # the CPU wheel first, so no extra pulls a CUDA build
	$(PIP) install -q -e ".[test]"

demo: install
	$(VENV)/bin/genevolve-graph run '$(DEMO_PROMPT)' --out $(DEMO_OUT)

test: install-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

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
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
