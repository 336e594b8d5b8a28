# Two commands: `make book` builds the site, `make test` runs every check.
# Both create .venv (Python 3.11+) and install requirements.txt into it when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JB_BUILD := $(BIN)/jupyter-book build . -W -n --keep-going
NBVAL := --nbval --nbval-sanitize-with tests/sanitize.cfg --nbval-current-env
# Notebooks run with single-threaded BLAS: the same rounding on every machine and no
# threads fighting over a small CPU. (Benchmarks set their own threading.)
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: book test unit nbval site notebooks bench lint clean

$(STAMP): requirements.txt pyproject.toml .jupyter/jupyter_nbconvert_config.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	# Executing a notebook records no timings, so re-running an unchanged chapter leaves no diff.
	mkdir -p $(VENV)/etc/jupyter && cp .jupyter/jupyter_nbconvert_config.json $(VENV)/etc/jupyter/
	touch $@

book: $(STAMP)  ## build the static site from the stored notebook outputs
	$(JB_BUILD)
	@echo "Open $(CURDIR)/_build/html/index.html"

test: $(STAMP)  ## unit tests, nbval on every chapter, and the site tests
	$(JB_BUILD)
	$(BIN)/python -m pytest tests book $(NBVAL) -q

unit: $(STAMP)  ## only the unit and property tests
	$(BIN)/python -m pytest tests -q --ignore=tests/site

site: $(STAMP)  ## build the site and test every page in headless Chromium
	$(JB_BUILD)
	$(BIN)/python -m pytest tests/site -q

nbval: $(STAMP)  ## only nbval on the book's notebooks
	$(BIN)/python -m pytest book $(NBVAL) -q

notebooks: $(STAMP)  ## re-execute every notebook in place, top to bottom, in a fresh kernel
	for nb in book/*.ipynb; do \
	  $(BIN)/jupyter nbconvert --to notebook --execute --inplace "$$nb" || exit 1; \
	done

bench: $(STAMP)  ## performance tables (torch comparisons need: pip install torch==2.13.0)
	env -u OPENBLAS_NUM_THREADS -u OMP_NUM_THREADS -u MKL_NUM_THREADS $(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check optimlab tests benchmarks

clean:
	rm -rf _build
