import pytest
import torch
from torch import nn

from course_lib.instruct import generate_ids, greedy_generate
from course_lib.models.outputs import ModelOutput

from tiny_models import tiny_gpt


class CountUp(nn.Module):
    """A fake LM whose greedy next token is always (last token + 1) mod V."""

    def __init__(self, vocab=20):
        super().__init__()
        self.vocab = vocab
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, **kwargs):
        logits = torch.nn.functional.one_hot((input_ids + 1) % self.vocab, self.vocab).float()
        return ModelOutput(loss=None, logits=logits + 0 * self.dummy)


def test_stops_right_after_eos_per_row():
    out = generate_ids(CountUp(), [[3], [5], [1, 2]], max_new_tokens=10, eos_token_id=6)
    assert out == [[4, 5, 6], [6], [3, 4, 5, 6]]  # EOS included, nothing after it


def test_max_new_tokens_without_eos():
    assert generate_ids(CountUp(), [[3]], max_new_tokens=4) == [[4, 5, 6, 7]]
    assert generate_ids(CountUp(), [[3]], max_new_tokens=4, eos_token_id=99) == [[4, 5, 6, 7]]
    assert generate_ids(CountUp(), [[3]], max_new_tokens=0) == [[]]


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        generate_ids(CountUp(), [[]])
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_ids(CountUp(), [[1]], max_new_tokens=-1)


def test_matches_course_gpt_generate_and_ignores_batching():
    model = tiny_gpt()
    prompts = [[5, 6, 7], [9, 10, 11], [3, 4], [8, 8, 8, 8, 8]]
    ours = generate_ids(model, prompts, max_new_tokens=6, batch_size=2)
    for p, o in zip(prompts, ours):
        ref = model.generate(torch.tensor([p]), max_new_tokens=6, temperature=0.0)[0, len(p):].tolist()
        assert o == ref
    assert generate_ids(model, prompts, max_new_tokens=6, batch_size=1) == ours


def test_hf_causal_lm_matches_transformers_generate():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1,
                                         max_position_embeddings=64)).eval()
    prompt = [3, 17, 9, 40]
    ours = generate_ids(model, [prompt, prompt[:2]], max_new_tokens=5)
    ref = model.generate(torch.tensor([prompt]), max_new_tokens=5, do_sample=False, min_new_tokens=5,
                         pad_token_id=0)[0, len(prompt):].tolist()
    assert ours[0] == ref
    eos = ours[0][1]  # make the second generated token the EOS: generation must stop there
    assert generate_ids(model, [prompt], max_new_tokens=5, eos_token_id=eos) == [ours[0][:2]]


def test_greedy_generate_decodes_without_special_tokens(small_tokenizer):
    tok = small_tokenizer
    target = tok("soup", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]

    class Says(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))
            self.calls = 0

        def forward(self, input_ids, **kwargs):
            step = min(self.calls, len(target) - 1)
            self.calls += 1
            logits = torch.zeros(*input_ids.shape, len(tok))
            logits[:, -1, target[step]] = 1.0
            return ModelOutput(loss=None, logits=logits)

    assert greedy_generate(Says(), tok, ["tom said"], max_new_tokens=10) == ["soup"]


def test_the_kv_cache_argument_is_the_one_this_transformers_takes():
    import inspect

    from transformers import LlamaConfig, LlamaForCausalLM

    from course_lib.instruct.generate import cache_argument

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    assert cache_argument(model) in inspect.signature(model.forward).parameters
