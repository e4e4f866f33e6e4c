# Two commands set everything up on a fresh machine (Python >= 3.10 with venv):
#   make demo   - install into .venv and run the main job on real data (embedded Qdrant)
#   make test   - install into .venv (with test extras) and run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is an optional extra; pinned so a CPU build installs (an unpinned torch pulls CUDA)
TORCH ?= torch==2.13.0
# Ray (the ray extra: scale-out, docs/scale.md); pinned so CI tests the version the docs were measured with
RAY ?= ray[data]==2.60.0
EXTRAS ?= test,plots,torch,langchain,llamaindex,examples,edge,ray

.PHONY: install demo test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)" "$(RAY)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]" \
		-e integrations/langchain-dbnorm-qdrant -e integrations/llama-index-dbnorm-qdrant

demo: install
	$(BIN)/dbnorm-qdrant demo

# pytest exits 5 when it collected no tests: that is a failure here, not a pass
test: install
	$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

bench: install
	$(BIN)/python benchmarks/bench_core.py --json benchmarks/results_core.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
