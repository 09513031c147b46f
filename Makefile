# The two commands: `make run` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test browser lint bench diagram clean

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/casework db upgrade
	$(BIN)/casework demo
	$(BIN)/casework serve

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# The console's browser tests drive Debian's Chromium (Playwright's own download cannot work here);
# installed when missing and we are root. Without it those tests skip locally and fail in CI.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .

# Small sizes, both engines, ~5 minutes; full sizes and the figures: docs/performance.md.
bench: $(STAMP)
	$(BIN)/python bench/machine_usage.py --n 5000
	$(BIN)/python bench/transitions.py --seconds 5
	$(BIN)/python bench/overdue_scan.py --repeat 3
	$(BIN)/python bench/lists.py --repeat 10
	$(BIN)/python bench/read_endings.py --requests 200
	$(BIN)/python bench/statements.py --runs 500
	$(BIN)/python bench/instructions.py --count 50

diagram: $(STAMP)
	$(BIN)/casework diagram

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache .hypothesis tests/console/screenshots
