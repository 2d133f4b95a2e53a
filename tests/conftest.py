import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# dtype=auto asks the hardware probe on a CPU (bf16 autocast where bf16 matmuls are fast); the
# suite pins it to fp32 so that no test's numbers depend on the CPU kind (docs/hardware.md)
os.environ.setdefault("LMLAB_AUTO_DTYPE", "fp32")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny models are all overhead: one thread is faster than two, and it keeps OpenMP threads
# from spinning against each other when several processes share the 2 cores. LMLAB_TEST_THREADS
# runs the suite with another count (`make test-portable` uses 2): fp32 reductions split across
# threads add in another order, and every tolerance must hold either way (docs/testing.md).
THREADS = int(os.environ.get("LMLAB_TEST_THREADS", "1"))
torch.set_num_threads(THREADS)


# The native decode step (lmlab/infer/native.c) is compiled with -march=native, which
# ATEN_CPU_CAPABILITY does not reach: LMLAB_TEST_MARCH builds it for another target instead
# (x86-64-v3: AVX2 + FMA, what an AVX2-only CPU gets; x86-64: no AVX, the scalar fallbacks).
MARCH = os.environ.get("LMLAB_TEST_MARCH")
if MARCH:
    from lmlab.infer import native

    native.FLAGS = [f"-march={MARCH}" if f == "-march=native" else f for f in native.FLAGS]


def pytest_report_header(config):
    return (f"torch {torch.__version__}: {torch.get_num_threads()} thread(s) "
            f"(LMLAB_TEST_THREADS), CPU capability {torch.backends.cpu.get_cpu_capability()} "
            f"(ATEN_CPU_CAPABILITY), native step -march={MARCH or 'native'} (LMLAB_TEST_MARCH)")


@pytest.fixture(scope="session")
def tokenizer():
    """The real SmolLM2 tokenizer (cached from the GGUF package once per machine)."""
    from lmlab.models import load_tokenizer

    return load_tokenizer("tiny:llama")


@pytest.fixture()
def tiny_model():
    """A fresh seeded 2-layer llama with the SmolLM2 vocabulary."""
    from lmlab.models import load_model

    return load_model("tiny:llama")
