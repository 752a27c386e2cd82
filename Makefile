# Two commands a new user needs: `make search` and `make test`. Both create .venv with pip on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned here only to the build that ships on our CI machines; on your platform use e.g.
#   make TORCH_SPEC="torch torchvision" test
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup search test check-install clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet --no-build-isolation -e ".[test,plot]"
	touch $@

setup: $(VENV)/.installed

# A complete search on the embedded digits set (about 1.5 minutes on 2 CPU cores), then print how to retrain it.
search: setup
	$(VENV)/bin/darts-forge search --out runs/search-digits-default-$$(date +%Y%m%d-%H%M%S)

# The test suite, then the package as a user installs it (a wheel in a fresh venv, used from outside the checkout).
test: setup
	$(PY) -m pytest -q
	$(MAKE) check-install

check-install: setup
	bash .ci/check-install $(PY) "$(TORCH_SPEC)"

clean:
	rm -rf $(VENV) runs .pytest_cache
