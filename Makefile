# The lab's two set-up commands (see README): `make run` and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --disable-pip-version-check -q

.PHONY: run test screenshots install install-test browser

run: install            ## install what the app needs and start it on http://127.0.0.1:7860
	$(PYTHON) app.py

test: install-test      ## install what the tests need and run the whole suite
	$(PYTHON) -m pytest

screenshots: install-test  ## rewrite the README's loop screenshots (docs/img/loop-*.png) from the browser loop test
	LAB_SCREENSHOTS=docs/img $(PYTHON) -m pytest tests/test_browser_loop.py -q

install:
	$(PIP) -r requirements.txt

install-test: browser
	$(PIP) -r requirements-dev.txt

browser:                ## Debian's chromium for the end-to-end browser tests (no browser download)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }
