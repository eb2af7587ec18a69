# The README's two commands: `make demo` and `make test`. Every step is idempotent.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DEBIAN_PACKAGES := wordnet-base openclipart-png openclipart-svg ruby-gemojione libjs-emojify \
	fonts-noto-color-emoji dataset-fashion-mnist
EXTRAS ?= rl,dev,faiss,pretrained,ray
# Torch threads: the demo's commands each run alone and use every core (ie_env.runtime's policy;
# `make demo IE_ENV_THREADS=2` or --threads overrides it). Tests default to 1 thread: pytest runs
# next to other work, and on a busy 2-core machine two OpenMP threads per process run several times
# slower than one. bfloat16 is used where the CPU has it natively; IE_ENV_BF16=0 turns it off.
TEST_THREADS ?= 1

.PHONY: setup system venv demo test test-all lint format bench

setup: system venv

system:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "Debian packages: all present"; fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the package metadata or pins change.
$(VENV)/.installed-$(EXTRAS): $(BIN)/python setup.cfg pyproject.toml constraints.txt
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

venv: $(VENV)/.installed-$(EXTRAS)

# One-time builds are cached under $$IE_ENV_HOME and skipped on later runs. The closing note gives
# each stage's wall time.
demo: setup
	@set -e; t0=$$SECONDS; \
	$(BIN)/ie-vocab embed --subset full; t1=$$SECONDS; \
	$(BIN)/ie-vocab info; \
	$(BIN)/ie-web build --target ocp-10; t2=$$SECONDS; \
	$(BIN)/ie-explore --target ocp-10; t3=$$SECONDS; \
	$(BIN)/ie-compare --config experiments/configs/frozen_5x3.toml; t4=$$SECONDS; \
	echo "demo stage times: vocabulary embeddings $$((t1 - t0)) s, offline web $$((t2 - t1)) s," \
		"ie-explore on the full env $$((t3 - t2)) s, ie-compare on the frozen env $$((t4 - t3)) s;" \
		"total $$((t4 - t0)) s"; \
	echo "Look: $(BIN)/tensorboard --logdir runs; reports: runs/*/report.md (with their plots)"

test: setup
	IE_ENV_THREADS=$${IE_ENV_THREADS:-$(TEST_THREADS)} $(BIN)/python -m pytest

test-all: setup
	IE_ENV_THREADS=$${IE_ENV_THREADS:-$(TEST_THREADS)} $(BIN)/python -m pytest --runslow

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(MAKE) system DEBIAN_PACKAGES=nginx-light
	$(MAKE) venv EXTRAS=rl,dev,faiss,pretrained,ray,bench
	mkdir -p runs
	for b in vocabulary search download learner env; do $(BIN)/python benchmarks/$$b.py --quick --json runs/bench-$$b.json || exit 1; done
