import copy

import pytest
import torch

from ..tiny import varied


@pytest.fixture(scope="module")
def model():
    return varied()


@pytest.fixture()
def lora_model(model):
    """A LoRA copy of ``model`` (r 4, every projection) whose adapters change the outputs."""
    from lmlab.models.adapters import add_lora

    torch.manual_seed(1)
    peft = add_lora(copy.deepcopy(model), r=4, alpha=8, dropout=0.0, targets=[])
    with torch.no_grad():  # LoRA B starts at zero: make the adapters change the outputs
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return peft
