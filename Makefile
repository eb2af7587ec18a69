# The README's two commands: `make demo` and `make test`. Every step is idempotent.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DEBIAN_PACKAGES := wordnet-base openclipart-png openclipart-svg ruby-gemojione libjs-emojify \
	fonts-noto-color-emoji dataset-fashion-mnist
EXTRAS ?= rl,dev,faiss,pretrained
# Torch threads for CPU work. Tests default to 1: on a busy 2-core machine two torch threads per
# process oversubscribe the cores (OpenMP) and run several times slower than one.
IE_ENV_THREADS ?= 1
export IE_ENV_THREADS

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

# One-time builds are cached under $$IE_ENV_HOME and skipped on later runs.
demo: setup
	$(BIN)/ie-vocab embed --subset full
	$(BIN)/ie-vocab info
	$(BIN)/ie-web build --target ocp-10
	$(BIN)/ie-explore --target ocp-10

test: setup
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest --runslow

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(MAKE) system DEBIAN_PACKAGES=nginx-light
	$(MAKE) venv EXTRAS=rl,dev,faiss,pretrained,bench
	mkdir -p runs
	for b in vocabulary search download learner env; do $(BIN)/python benchmarks/$$b.py --quick --json runs/bench-$$b.json || exit 1; done
