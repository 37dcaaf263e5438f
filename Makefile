# `make run` and `make test` do all set-up on a fresh machine: venv, torch, the project, lpips files.
#
# TORCH_SPEC chooses the torch build. The default is the CPU build (torch==2.13.0), so a machine
# without an NVIDIA GPU never downloads gigabytes of CUDA libraries. GPU users, e.g.:
#   make run TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.editgan-installed
PYTEST_ARGS ?=
SERVER_ARGS ?=

.PHONY: setup run test demo install-krita package-krita clean-venv

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps lpips  # only its linear-head weight files are used (never imported)
	touch $@

setup: $(STAMP)

# The editing server on the built-in demo model, loopback only (Ctrl-C stops it cleanly).
run: setup
	$(VENV)/bin/editgan-server $(SERVER_ARGS)

demo: setup
	$(VENV)/bin/editgan demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# Copy the docker plugin into your Krita resources folder and enable it (Linux/macOS/Windows paths).
install-krita:
	$(PYTHON) scripts/install_krita_plugin.py

# Release zip for Tools > Scripts > Import Python Plugin from File, with pyzmq + msgpack vendored.
KRITA_PLATFORM ?= win_amd64
KRITA_PYTHON ?= 3.10
package-krita: setup
	$(VENV)/bin/editgan package-krita --platform $(KRITA_PLATFORM) --python $(KRITA_PYTHON) --out dist

clean-venv:
	rm -rf $(VENV)
