"""The real default model, in the default test run: CI must exercise it."""

import time

import torch

from lmlab.models import load_model, load_tokenizer, resolve


def test_default_alias_loads_and_answers_sensibly():
    assert resolve("smollm2-135m-instruct").kind == "alias"
    tok = load_tokenizer("smollm2-135m-instruct")
    t0 = time.time()
    model = load_model("smollm2-135m-instruct")  # converted once per machine, then cached
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    reload_s = time.time() - t0
    t0 = time.time()
    load_model("smollm2-135m-instruct")
    assert time.time() - t0 < max(10.0, reload_s)  # the cached load is not a re-conversion
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    answer = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer
