# The two commands a new user types: `make demo` and `make test`.
# Everything lands in ./.venv; models in ~/.cache/cmsearch/models; the local engine state in
# ~/.local/state/cmsearch/engine (the tests use ./.state/test-engine).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install models test demo clean

$(STAMP): setup.cfg pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[export,ocr,test]'
	touch $(STAMP)

install: $(STAMP)

models: $(STAMP)
	$(BIN)/cmsearch models build

test: models
	$(BIN)/pytest -ra

demo: models
	@test -d /usr/share/datasets/fashion-mnist || { echo "installing Debian's dataset-fashion-mnist (the demo's photos)"; \
	  apt-get install -y -q dataset-fashion-mnist || { apt-get update -q && apt-get install -y -q dataset-fashion-mnist; }; }
	$(BIN)/cmsearch demo

clean:
	rm -rf $(VENV) .state
