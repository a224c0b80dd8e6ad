"""Direct Preference Optimization (Rafailov et al. 2023) with LoRA, the reference being the adapter switched off.

DPO trains a policy pi_theta on pairs (prompt x, chosen y_w, rejected y_l) against a
frozen reference pi_ref. Each response gets an implicit reward

    r(x, y) = beta * (log pi_theta(y | x) - log pi_ref(y | x))

and the loss is ``-log sigmoid(r(x, y_w) - r(x, y_l))``: raise the chosen response's
log-probability relative to the reference more than the rejected one's. ``beta`` sets how
far the policy may drift from the reference (small beta: far).

With LoRA the reference costs no memory: the policy *is* the base model plus an
adapter, so switching the adapter off (:func:`course_lib.peft.lora.disable_lora`) gives
back the frozen base model, the natural reference. :class:`DPOModel` therefore keeps a
single copy of the weights; pass an explicit ``reference`` module only for a policy
without LoRA (then two models sit in memory).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.collate import IGNORE_INDEX
from ..data.corpus import check_count
from ..models.decoding import greedy_extend
from ..peft.lora import disable_lora, lora_layers
from ..train import evaluate

METRIC_NAMES: tuple[str, ...] = ("margin", "accuracy", "chosen_reward", "rejected_reward")


def sequence_logprobs(logits: Tensor, labels: Tensor) -> Tensor:
    """log p(response) per row, [B]: the sum over labelled positions of log p(label), in float32.

    The logits at position t score the label at t + 1 (``logits[:, :-1]`` against ``labels[:, 1:]``);
    positions labelled -100 (prompt, padding) add nothing.
    """
    if logits.dim() != 3 or labels.dim() != 2 or logits.shape[:2] != labels.shape:
        raise ValueError(f"sequence_logprobs needs logits [B, T, V] and labels [B, T] with the same B and T, got "
                         f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)}.")
    if labels.size(1) < 2:
        raise ValueError(f"sequence_logprobs needs T >= 2 (a token and the one it predicts), got T={labels.size(1)}.")
    shifted_logits, targets = logits[:, :-1].float(), labels[:, 1:]
    token_logprobs = -F.cross_entropy(shifted_logits.reshape(-1, shifted_logits.size(-1)), targets.reshape(-1),
                                      ignore_index=IGNORE_INDEX, reduction="none")  # 0 where ignored
    return token_logprobs.view(targets.shape).sum(dim=1)


def check_beta(beta: Any) -> float:
    """``beta`` as a float, or a ValueError unless it is a finite number > 0."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a finite number > 0 (e.g. 0.1), got {beta!r}.")
    return float(beta)


@dataclass
class DPOTerms:
    """The DPO loss of a batch and each pair's implicit rewards (chosen and rejected, [B] each)."""

    loss: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor

    @property
    def margin(self) -> float:
        """Mean of chosen reward minus rejected reward over the batch."""
        return float((self.chosen_rewards - self.rejected_rewards).detach().mean())

    @property
    def accuracy(self) -> float:
        """Share of pairs whose chosen reward is strictly above the rejected one (ties count as wrong)."""
        return float((self.chosen_rewards > self.rejected_rewards).float().mean())

    def metrics(self) -> dict[str, float]:
        """Batch means: margin, accuracy, chosen_reward and rejected_reward."""
        return {"margin": self.margin, "accuracy": self.accuracy,
                "chosen_reward": float(self.chosen_rewards.detach().mean()),
                "rejected_reward": float(self.rejected_rewards.detach().mean())}


def dpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, reference_chosen: Tensor, reference_rejected: Tensor,
             beta: float) -> DPOTerms:
    """DPO from sequence log-probabilities [B]: rewards beta * (policy - reference), loss -log sigmoid(difference)."""
    beta = check_beta(beta)
    named = {"policy_chosen": policy_chosen, "policy_rejected": policy_rejected,
             "reference_chosen": reference_chosen, "reference_rejected": reference_rejected}
    shapes = {k: tuple(v.shape) for k, v in named.items()}
    if len(set(shapes.values())) != 1 or policy_chosen.dim() != 1 or policy_chosen.numel() == 0:
        raise ValueError(f"dpo_loss needs four non-empty 1-D tensors of one shape [B], got {shapes}.")
    chosen_rewards = beta * (policy_chosen.float() - reference_chosen.float())
    rejected_rewards = beta * (policy_rejected.float() - reference_rejected.float())
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return DPOTerms(loss=loss, chosen_rewards=chosen_rewards, rejected_rewards=rejected_rewards)


@dataclass
class DPOOutput:
    """What :class:`DPOModel` returns: the loss, no logits, and the batch's DPO metrics (see ``METRIC_NAMES``)."""

    loss: Tensor
    logits: Tensor | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Inside the block ``module`` is in eval mode (dropout off); afterwards every submodule gets its own mode back."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, mode in modes:  # parents first, so each child ends with its own saved mode
            m.train(mode)


def check_adapter_reference(policy: nn.Module) -> None:
    """A clear error unless switching the policy's LoRA off can serve as the reference model."""
    layers = lora_layers(policy)
    if not layers:
        raise ValueError("The policy has no LoRA layers, so there is no adapter to switch off for the reference "
                         "model. Add one (course_lib.peft.lora.add_lora + mark_lora_trainable) or pass an explicit "
                         "frozen reference=... module.")
    merging = [path for path, layer in layers.items() if layer.merge_on_eval]
    if merging:
        raise ValueError(f"LoRA layers {merging[:3]} were added with merge_on_eval=True: the reference pass puts the "
                         "policy in eval mode, which would merge and unmerge the adapter on every step. Add the "
                         "adapter with merge_on_eval=False for DPO.")


def _check_policy_trainables(policy: nn.Module) -> None:
    """A clear error unless an adapter is active and only LoRA tensors train (else the reference would drift)."""
    if not any(layer.active for layer in lora_layers(policy).values()):
        raise ValueError("No LoRA adapter is active, so the policy equals its reference and DPO has nothing to train. "
                         "Call mark_lora_trainable(policy, name, head_patterns=()) first.")
    drifting = [n for n, p in policy.named_parameters()
                if p.requires_grad and ".lora_A." not in n and ".lora_B." not in n]
    if drifting:
        raise ValueError(f"Parameters outside LoRA are trainable ({drifting[:3]}{'...' if len(drifting) > 3 else ''}): "
                         "training them would change the adapter-off reference too. Use "
                         "mark_lora_trainable(policy, name, head_patterns=()) so only the adapter trains.")


@torch.no_grad()
def reference_logprobs(policy: nn.Module, reference: nn.Module | None, input_ids: Tensor,
                       attention_mask: Tensor | None, labels: Tensor) -> Tensor:
    """Response log-probabilities [rows] under ``reference``, or under the policy with its LoRA off when it is None.

    No gradients and dropout off; an explicit reference follows the inputs to their device.
    """
    if reference is None:
        check_adapter_reference(policy)
        with eval_mode(policy), disable_lora(policy):
            return sequence_logprobs(policy(input_ids=input_ids, attention_mask=attention_mask).logits, labels)
    params = list(reference.parameters())
    if params and params[0].device != input_ids.device:
        reference.to(input_ids.device)
    with eval_mode(reference):
        return sequence_logprobs(reference(input_ids=input_ids, attention_mask=attention_mask).logits, labels)


class DPOModel(nn.Module):
    """A policy trained with DPO; ``forward(**PreferenceCollator batch)`` returns a :class:`DPOOutput`.

    ``reference=None`` (the memory-free way): the reference is the policy itself with its
    LoRA adapter switched off, run without gradients and with dropout off. Otherwise the
    given module is the reference: it is frozen (requires_grad False, eval mode) and kept
    out of this module's parameters, so optimizers and parameter counts see only the
    policy; it follows the inputs to their device on first use.
    """

    def __init__(self, policy: nn.Module, beta: float = 0.1, reference: nn.Module | None = None) -> None:
        super().__init__()
        self.beta = check_beta(beta)
        self.policy = policy
        if reference is None:
            check_adapter_reference(policy)
        elif reference is policy:
            raise ValueError("reference is the policy itself; pass reference=None to use the policy with its LoRA "
                             "adapter switched off.")
        else:
            shared = {id(p) for p in policy.parameters()} & {id(p) for p in reference.parameters()}
            if shared:
                raise ValueError(f"reference shares {len(shared)} parameter tensors with the policy; freezing it would "
                                 "freeze the policy too. Pass a separate copy (copy.deepcopy) or reference=None.")
            reference.requires_grad_(False)
            reference.eval()
        self._reference: tuple[nn.Module, ...] = () if reference is None else (reference,)  # a tuple: not registered

    @property
    def reference(self) -> nn.Module | None:
        """The explicit reference module, or None when the reference is the adapter-off policy."""
        return self._reference[0] if self._reference else None

    def policy_logprobs(self, input_ids: Tensor, attention_mask: Tensor | None, labels: Tensor) -> Tensor:
        """Response log-probabilities [rows] under the policy (with gradients when enabled)."""
        return sequence_logprobs(self.policy(input_ids=input_ids, attention_mask=attention_mask).logits, labels)

    def reference_logprobs(self, input_ids: Tensor, attention_mask: Tensor | None, labels: Tensor) -> Tensor:
        """Response log-probabilities [rows] under the reference: no gradients, dropout off."""
        return reference_logprobs(self.policy, self.reference, input_ids, attention_mask, labels)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                labels: Tensor | None = None) -> DPOOutput:
        """DPO loss and metrics of a batch whose first half of rows are chosen and second half rejected."""
        if labels is None:
            raise ValueError("DPOModel needs labels (-100 on prompt and padding); use PreferenceCollator batches.")
        if input_ids.dim() != 2 or input_ids.size(0) % 2 or input_ids.size(0) == 0:
            raise ValueError(f"DPOModel needs input_ids [2B, T] (B chosen rows, then B rejected rows), got shape "
                             f"{tuple(input_ids.shape)}.")
        if self.reference is None and torch.is_grad_enabled():
            _check_policy_trainables(self.policy)
        half = input_ids.size(0) // 2
        reference = self.reference_logprobs(input_ids, attention_mask, labels)
        policy = self.policy_logprobs(input_ids, attention_mask, labels)
        terms = dpo_loss(policy[:half], policy[half:], reference[:half], reference[half:], self.beta)
        return DPOOutput(loss=terms.loss, metrics=terms.metrics())

    def extra_repr(self) -> str:
        kind = "adapter off" if self.reference is None else type(self.reference).__name__
        return f"beta={self.beta}, reference={kind}"


def preference_metrics(dpo_model: DPOModel, examples: Sequence, collate_fn: Callable, batch_size: int = 64,
                       device: torch.device | None = None) -> dict[str, float]:
    """Held-out DPO loss, margin, accuracy, chosen_reward and rejected_reward (means over all pairs; no gradients)."""
    if not isinstance(dpo_model, DPOModel):
        raise TypeError(f"preference_metrics needs a DPOModel, got {type(dpo_model).__name__}.")
    if len(examples) == 0:
        raise ValueError("preference_metrics needs at least one tokenized pair.")
    return evaluate(dpo_model, examples, collate_fn, device, check_count("batch_size", batch_size))


def _generated_labels(sequences: Tensor, prompt_len: int, eos_token_id: int | None) -> Tensor:
    """Labels that score the generated tokens up to and including each row's first EOS (-100 elsewhere)."""
    labels = sequences.clone()
    labels[:, :prompt_len] = IGNORE_INDEX
    if eos_token_id is not None:
        generated = sequences[:, prompt_len:] == eos_token_id
        after_eos = (generated.long().cumsum(dim=1) - generated.long()) > 0  # strictly after the first EOS
        labels[:, prompt_len:][after_eos] = IGNORE_INDEX
    return labels


@torch.no_grad()
def sampled_kl(policy: nn.Module, prompts_ids: Sequence[Sequence[int]], max_new_tokens: int, samples: int = 4,
               generator: torch.Generator | None = None, reference: nn.Module | None = None,
               eos_token_id: int | None = None) -> float:
    """Monte-Carlo KL(pi_theta || pi_ref) per prompt, averaged over prompts.

    For each prompt, ``samples`` continuations are drawn from the policy at temperature 1
    (dropout off; ``generator`` on the model's device makes them reproducible), and the
    estimate is the mean over samples of sum_t [log pi_theta(y_t | ...) - log pi_ref(y_t | ...)]
    over the generated tokens up to and including EOS. ``reference=None``: the policy with
    its LoRA adapter switched off. A fresh LoRA (B = 0) gives exactly 0.
    """
    max_new_tokens, samples = check_count("max_new_tokens", max_new_tokens), check_count("samples", samples)
    prompts = [list(p) for p in prompts_ids]
    if not prompts:
        raise ValueError("sampled_kl needs at least one prompt (a list of token ids).")
    limit = getattr(getattr(policy, "config", None), "max_len", None)  # the course GPT's positions
    for i, p in enumerate(prompts):
        if not p:
            raise ValueError(f"prompt {i} is empty; give at least one token id.")
        if isinstance(limit, int) and len(p) + max_new_tokens > limit:
            raise ValueError(f"prompt {i} has {len(p)} tokens; with max_new_tokens={max_new_tokens} that exceeds the "
                             f"model's max_len={limit}. Shorten the prompt or lower max_new_tokens.")
    if reference is None:
        check_adapter_reference(policy)
    device = next(policy.parameters()).device
    estimates = []
    with eval_mode(policy):
        for p in prompts:
            ids = torch.tensor([p] * samples, dtype=torch.long, device=device)
            sequences = greedy_extend(lambda context: policy(input_ids=context).logits[:, -1, :], ids, max_new_tokens,
                                      eos_token_id=eos_token_id, temperature=1.0, generator=generator)
            labels = _generated_labels(sequences, len(p), eos_token_id)
            policy_logp = sequence_logprobs(policy(input_ids=sequences).logits, labels)
            reference_logp = reference_logprobs(policy, reference, sequences, None, labels)
            estimates.append(float((policy_logp - reference_logp).mean()))
    return sum(estimates) / len(estimates)
