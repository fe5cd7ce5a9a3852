"""Multi-turn PPO with a value head: the paper's RL, every detail visible and named.

One update (CleanRL-style, hyper-parameters in :class:`PPOConfig`):

1. **Roll out** ``episodes_per_update`` episodes with the current policy (batched, with the paper's
   sequential revision: answer, verifier feedback, next answer, ... up to ``verify_iter`` tries).
   Every answer is one transition: (chat so far, answer tokens, reward, done).
2. **Score** each transition once with the frozen snapshot: the sequence log-probability of the
   answer (the "thought" tokens before the key field weighted by ``thought_prob_coef``) and the
   value of the last prompt token (an MLP head on the final hidden state). With ``pack_turns``
   the turns of an episode whose tokens chain (each prompt + answer begins the next prompt) are
   read from one forward pass over the last turn: the same numbers, for about a third of the
   tokens on a multi-turn GeneralPoints episode.
3. **Advantages** by GAE (``gamma``, ``gae_lambda``) along each episode; normalised over the buffer.
4. **Optimise** ``ppo_epochs`` passes over shuffled mini-batches: clipped surrogate on the
   *sequence* ratio (one ratio per answer, clipped at ``clip_eps``; when a ratio exceeds
   ``ratio_guard`` only the clipped term is used), clipped value loss, optional entropy bonus and KL
   penalty against a frozen reference (both off by default, as in the official runs), gradient
   clipping, Adam; the cosine learning rate steps once per update.

Where our defaults differ from the official code, and why:

- *Episodes end where they end.* The official buffer keeps ``num_steps`` transitions per process and
  treats truncation as not-done, so GAE bootstraps across a reset into the next episode. We collect
  whole episodes and treat the end of the verification budget as the end of the episode
  (``episode_end="terminal"``); ``episode_end="paper"`` reproduces the bootstrap across episodes.
- *Every answer token counts.* The official log-probability drops the first generated token and
  falls back to "the 4th token from the end" (or a constant -2) when the key is missing; we weight
  all tokens, and all at 1.0 when the key is missing.
- *Scoring after generation.* Old log-probs and values come from one no-grad pass over the buffer,
  not from the sampling pass, so the ratio starts at exactly 1 (sampling temperature and top-p do
  not leak into the log-probabilities: the policy is scored at temperature 1).
- *Mini-batches keep an episode's turns together* (``pack_turns``, on by default), so that they
  share one forward pass; the official code shuffles single transitions. ``pack_turns=False``
  shuffles single transitions again. Compute is counted as the official counter does (every
  answer with its whole chat), so the FLOPs axis does not depend on the packing.
- *Sizes.* Value-head widths, ``max_new_tokens`` and batch sizes are per tier (the YAML configs);
  the dataclass defaults are the paper's.

Multi-process: every process rolls out its own episodes (different seeds) and the gradients are
averaged by ``accelerate`` before each optimizer step, so N processes give N× the buffer.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from sftvrl.compute import ComputeTracker, count_parameters
from sftvrl.data import TASKS, make_task_env
from sftvrl.models import ModelConfig, Policy, load_policy
from sftvrl.runs import Run
from sftvrl.train.drift import parameter_drift, snapshot
from sftvrl.train.generation import PolicyResponder, SamplingConfig
from sftvrl.train.rollout import Episode, rollout

logger = logging.getLogger(__name__)

KEY_FIELDS = ('"formula"', '"action"')
"""The answer field after which tokens are the action proper; before it, "thought" tokens."""


@dataclass
class PPOConfig:
    """Every PPO hyper-parameter, with the paper's values as defaults (PAPER.md §3.4)."""

    num_updates: int = 20
    episodes_per_update: int = 64
    """Episodes rolled out per process per update (the paper: 256 transitions per process)."""
    rollout_batch: int = 32
    """Episodes played concurrently (slots of the batched rollout engine)."""
    ppo_epochs: int = 4
    mini_batch_size: int = 8
    """Transitions per forward/backward pass."""
    grad_accumulation: int = 16
    """Mini-batches averaged per optimizer step (the paper: 128 samples per step per GPU)."""
    learning_rate: float = 1e-6
    lr_min: float = 1e-9
    lr_max_steps: int = 100
    """Cosine schedule length in updates (``T_max``); the paper stops after 20 of 100."""
    adam_eps: float = 1e-7
    weight_decay: float = 0.0
    max_grad_norm: float = 0.01
    clip_eps: float = 0.1
    value_clip_eps: float = 0.1
    value_loss_coef: float = 0.5
    critic_backprop: bool = True
    """The value loss trains the policy's own layers too (the paper's shared model). False: the
    value head reads the policy's features with the gradient stopped, so only the policy loss
    changes the language model."""
    ratio: Literal["sequence", "token"] = "sequence"
    """``sequence``: the paper's (the official code's) probability ratio of a whole answer, its
    thought tokens weighted by ``thought_prob_coef``. ``token``: one ratio per answer token,
    clipped per token and averaged over the answer (with the same weights), as TRL's PPO and GRPO
    do, so a 40-token answer does not multiply 40 small changes into one ratio."""
    ratio_guard: float = 10.0
    thought_prob_coef: float = 0.5
    gamma: float = 0.9
    gae_lambda: float = 0.95
    normalize_advantages: bool = True
    episode_end: Literal["terminal", "paper"] = "terminal"
    entropy_coef: float = 0.0
    kl_coef: float = 0.0
    """KL penalty against a frozen copy of the starting policy (off in the official runs)."""
    temperature: float = 0.2
    top_p: float = 0.9
    max_new_tokens: int = 512
    value_hidden_sizes: tuple[int, ...] = (1024, 512)
    pack_turns: bool = True
    """Score the turns of an episode in one forward pass over its tokens when each turn's prompt
    and answer begin the next turn's prompt (the same log-probabilities and values as one pass
    per turn, at a fraction of the cost); mini-batches then take an episode's turns together."""


@dataclass
class RLEnvConfig:
    """Which environment the policy is trained on (and evaluated on)."""

    task: str = "gp-l"
    split: str = "id"
    verify_iter: int | None = None
    """None: the paper's setting (5 for GeneralPoints, 2 for V-IRL)."""
    mode: str = "exact"
    prompt: str = "paper"
    image_size: int = 112

    def env_kwargs(self, split: str | None = None) -> dict[str, Any]:
        family, vision = TASKS[self.task]
        kwargs: dict[str, Any] = {"split": split or self.split, "mode": self.mode}
        kwargs["prompt"] = self.prompt
        if self.verify_iter is not None:
            kwargs["verify_iter"] = self.verify_iter
        if vision:
            kwargs["image_width" if family == "general_points" else "view_size"] = self.image_size
        return kwargs


@dataclass
class RLEval:
    every: int = 5
    """Evaluate every this many updates (and before the first and after the last); 0 = never."""
    splits: list[str] = field(default_factory=lambda: ["id", "rule_ood"])
    n_episodes: int = 64
    max_new_tokens: int = 512
    temperature: float = 0.0
    batch_size: int = 32
    seed: int = 42
    start_eval_from: str | None = None
    """A run folder whose last evaluation scored this run's starting checkpoint with these same
    settings (an Init run): its records are logged as update 0 instead of evaluating again, since
    a greedy evaluation of the same weights on the same episodes gives the same outcomes."""


@dataclass
class RLExperiment:
    """One RL run: model (usually an Init checkpoint), environment, PPO, evaluation, run folder."""

    model: ModelConfig = field(default_factory=ModelConfig)
    env: RLEnvConfig = field(default_factory=RLEnvConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    eval: RLEval = field(default_factory=RLEval)
    save_every: int = 5
    init_tokens: int = 0
    """Training tokens that made the starting checkpoint (the FLOPs axis starts there)."""
    output: str = "runs"
    name: str = "rl"
    seed: int = 0


# -- model pieces ------------------------------------------------------------------------------


class ValueHead(nn.Module):
    """MLP from the last hidden state to a scalar value (the paper: 4096 -> 1024 -> 512 -> 1)."""

    def __init__(self, hidden_size: int, hidden_sizes: Sequence[int] = (1024, 512)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = hidden_size
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden.float()).squeeze(-1)


def hidden_size(model: nn.Module) -> int:
    return int(model.get_input_embeddings().weight.shape[1])


class ActorCritic(nn.Module):
    """The policy and its value head as one module, so ``accelerate`` (DDP, DeepSpeed) wraps,
    shards and averages both together."""

    def __init__(
        self, model: nn.Module, value_head: ValueHead, critic_backprop: bool = True
    ) -> None:
        super().__init__()
        self.model = model
        self.value_head = value_head
        self.critic_backprop = critic_backprop

    def forward(
        self, value_positions: torch.Tensor, value_rows: torch.Tensor | None = None, **inputs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of every position, and the values at ``value_positions`` of ``value_rows``
        (default: one position per row)."""
        output = self.model(**inputs, output_hidden_states=True)
        hidden = output.hidden_states[-1]
        if value_rows is None:
            value_rows = torch.arange(hidden.shape[0], device=hidden.device)
        features = hidden[value_rows, value_positions]
        if not self.critic_backprop:
            features = features.detach()
        return output.logits, self.value_head(features)


@dataclass
class Transition:
    """One answer of one episode, with what PPO needs to score it again."""

    episode: int
    turn: int
    prompt_ids: torch.Tensor
    response_ids: torch.Tensor
    thought_length: int
    """Leading answer tokens that are "thought" (weighted by ``thought_prob_coef``)."""
    image: Any
    reward: float
    done: bool
    terminated: bool
    chain: int = -1
    """Transitions with the same ``chain`` (consecutive turns of one episode) are token prefixes of
    one another: each one's prompt and answer begin the next one's prompt (see :func:`link_turns`).
    -1: not linked to any other."""
    old_logprob: float = 0.0
    old_token_logprobs: torch.Tensor | None = None
    """Per answer token (``PPOConfig.ratio="token"`` only)."""
    old_value: float = 0.0
    ref_logprob: float = 0.0
    advantage: float = 0.0
    ret: float = 0.0


def thought_weights(transition: Transition, thought_prob_coef: float) -> torch.Tensor:
    """Each answer token's weight: ``thought_prob_coef`` before the key field, 1 after it."""
    thought = torch.arange(len(transition.response_ids)) < transition.thought_length
    return torch.where(thought, thought_prob_coef, 1.0)


def thought_length(tokenizer: Any, response_ids: torch.Tensor) -> int:
    """How many leading answer tokens come before the key field ('"formula"' or '"action"')."""
    text = ""
    for index, token in enumerate(response_ids.tolist()):
        text += tokenizer.decode([token], skip_special_tokens=True)
        if any(key in text for key in KEY_FIELDS):
            return max(index - 2, 0)  # the key's opening quote starts about two tokens earlier
    return 0


def _images_to_pixels(policy: Policy, images: list[Any]) -> dict[str, torch.Tensor]:
    processor = policy.processor.image_processor  # type: ignore[union-attr]
    pixels = processor(images=images, return_tensors="pt")
    return {k: v.to(policy.device) for k, v in pixels.items()}


_SCORE_SPLIT = {"cpu": 64}
"""Padding tokens (rows x columns) that justify one more forward pass when scoring, per device
type: on CPU a pass costs little beyond its tokens, so rows of very different lengths are scored
in separate passes instead of being padded to the longest."""
_DEFAULT_SCORE_SPLIT = 1 << 30
"""Elsewhere (GPUs) padding is cheap next to a pass's launch overhead: one pass per batch."""


def length_groups(lengths: Sequence[int], split: int) -> list[list[int]]:
    """Row indices split into forward passes of similar lengths, longest first.

    The rows sorted by length are cut where it minimises the padded tokens (rows x the pass's
    longest row) plus ``split`` per pass (exact, by dynamic programming). Scoring a row does not
    depend on the other rows of its pass, so this changes speed only.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    ordered = [lengths[i] for i in order]
    n = len(ordered)
    best = [0] + [-1] * n
    cut = [0] * (n + 1)
    for stop in range(1, n + 1):
        for start in range(stop):
            cost = best[start] + (stop - start) * ordered[start] + split
            if best[stop] < 0 or cost < best[stop]:
                best[stop], cut[stop] = cost, start
    spans = []
    stop = n
    while stop > 0:
        spans.append((cut[stop], stop))
        stop = cut[stop]
    return [order[a:b] for a, b in reversed(spans)]


def _keeps_logits(model: nn.Module) -> bool:
    """Whether the (unwrapped, peft-unwrapped) model's forward takes ``logits_to_keep``."""
    import inspect

    while hasattr(model, "module"):  # DDP / DeepSpeed wrappers
        model = model.module
    inner = getattr(model, "model", model)  # ActorCritic
    get_base_model = getattr(inner, "get_base_model", None)
    base = get_base_model() if callable(get_base_model) else inner
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def link_turns(transitions: Sequence[Transition]) -> None:
    """Give consecutive turns of an episode one ``chain`` where each turn's prompt and answer are
    exactly the start of the next turn's prompt (same image), in place.

    A chain is then one token sequence: by causal attention, every turn's answer log-probability
    and value can be read from one forward pass over its last turn. An answer that re-tokenises
    differently, or a new conversation (V-IRL after a correct step), starts a new chain.
    """
    chain, previous = -1, None
    for t in transitions:
        if previous is None or not _continues(previous, t):
            chain += 1
        t.chain = chain
        previous = t


def _continues(before: Transition, after: Transition) -> bool:
    """Whether ``before``'s prompt and answer are a token prefix of ``after``'s prompt."""
    if before.episode != after.episode or before.image is not after.image:
        return False
    prompt, answer = len(before.prompt_ids), len(before.response_ids)
    return (
        len(after.prompt_ids) >= prompt + answer
        and torch.equal(after.prompt_ids[:prompt], before.prompt_ids)
        and torch.equal(after.prompt_ids[prompt : prompt + answer], before.response_ids)
    )


def packed_rows(batch: Sequence[Transition]) -> list[list[int]]:
    """Indices of ``batch`` grouped into forward-pass rows: the members of one chain share a row
    (in turn order), an unlinked transition has its own."""
    rows: dict[Any, list[int]] = {}
    for i, t in enumerate(batch):
        rows.setdefault(t.chain if t.chain >= 0 else ("alone", i), []).append(i)
    return [sorted(members, key=lambda i: batch[i].turn) for members in rows.values()]


class Scores(NamedTuple):
    """What :func:`score` reads from a batch of transitions (in batch order)."""

    logprobs: torch.Tensor
    """Weighted sequence log-probability of each answer."""
    values: torch.Tensor
    entropy: torch.Tensor
    """Mean token entropy (zero unless asked for)."""
    token_logprobs: torch.Tensor
    """Every answer token's log-probability, the transitions' answers concatenated."""


def score(
    policy: Policy,
    actor_critic: nn.Module,
    batch: Sequence[Transition],
    thought_prob_coef: float,
    *,
    with_entropy: bool = False,
) -> Scores:
    """Sequence and token log-probabilities, values and mean token entropy of a batch.

    Each row of a forward pass is right-padded prompt + answer of one transition, or of the last
    turn of a chain (:func:`link_turns`) whose earlier turns are read from the same row; the value
    is read at each transition's last prompt token. ``actor_critic`` runs the forward pass
    (wrapped by DDP when training on several processes, so gradients are averaged); ``policy``
    supplies the tokenizer, processor and device.

    For speed only (the same quantities, up to floating-point rounding): chains share a row; rows
    of very different lengths go through separate forward passes (:func:`length_groups`; one
    backward covers them all; not under a distributed wrapper, whose passes may synchronise the
    processes), text models get no attention mask (see below), the language-model head runs only
    on the columns that predict answer tokens, and the answer tokens of all rows of a pass share
    one log-softmax.
    """
    device = policy.device
    pad = policy.tokenizer.pad_token_id
    totals = [len(t.prompt_ids) + len(t.response_ids) for t in batch]
    rows = packed_rows(batch)
    carriers = [batch[members[-1]] for members in rows]  # the row's tokens: its last turn's
    lengths = [totals[members[-1]] for members in rows]
    split = _SCORE_SPLIT.get(device.type, _DEFAULT_SCORE_SPLIT)
    if hasattr(actor_critic, "module"):
        # DDP / DeepSpeed: a wrapped forward can synchronise the processes (DDP broadcasts
        # buffers), so every process must make as many passes as the others: one per batch
        split = _DEFAULT_SCORE_SPLIT
    keep_logits = _keeps_logits(actor_critic)
    order: list[int] = []
    logprob_parts, value_parts, entropy_parts = [], [], []
    token_parts: dict[int, torch.Tensor] = {}
    for group in length_groups(lengths, split):
        width = max(lengths[r] for r in group)
        input_ids = torch.full((len(group), width), pad, dtype=torch.long)
        for j, r in enumerate(group):
            t = carriers[r]
            input_ids[j, : len(t.prompt_ids)] = t.prompt_ids
            input_ids[j, len(t.prompt_ids) : lengths[r]] = t.response_ids
        input_ids = input_ids.to(device)
        inputs: dict[str, Any] = {"input_ids": input_ids}
        if policy.vision:
            attention = torch.zeros_like(input_ids)
            for j, r in enumerate(group):
                attention[j, : lengths[r]] = 1
            inputs["attention_mask"] = attention
            inputs |= _images_to_pixels(policy, [carriers[r].image for r in group])
        # (a text model needs no attention mask: the padding is on the right and attention is
        # causal, so no real token attends to a pad, and the attention kernel skips the masked
        # half instead of reading a mask)
        members = [(j, i) for j, r in enumerate(group) for i in rows[r]]
        member_rows = torch.tensor([j for j, _ in members])
        prompts = [len(batch[i].prompt_ids) for _, i in members]
        # logits at column c predict token c + 1, so an answer's come from start-1 .. end-2
        first = min(prompts) - 1
        if keep_logits:
            inputs["logits_to_keep"] = width - first
        positions = torch.tensor(prompts) - 1
        logits, values = actor_critic(positions.to(device), member_rows.to(device), **inputs)
        offset = width - logits.shape[1]  # the column of logits[:, 0]
        answer_lengths = [len(batch[i].response_ids) for _, i in members]
        segments = torch.repeat_interleave(torch.arange(len(members)), torch.tensor(answer_lengths))
        token_rows = member_rows[segments].to(device)
        columns = torch.cat(
            [
                torch.arange(prompt - 1, prompt - 1 + n)
                for prompt, n in zip(prompts, answer_lengths, strict=True)
            ]
        ).to(device)
        segments = segments.to(device)
        step_logits = logits[token_rows, columns - offset].float()  # [answer tokens, vocab]
        token_logprobs = torch.log_softmax(step_logits, dim=-1)
        chosen = token_logprobs.gather(1, input_ids[token_rows, columns + 1][:, None])[:, 0]
        for (_, i), tokens in zip(members, chosen.split(answer_lengths), strict=True):
            token_parts[i] = tokens
        weights = torch.cat([thought_weights(batch[i], thought_prob_coef) for _, i in members])
        weights = weights.to(device)
        sums = torch.zeros(len(members), dtype=chosen.dtype, device=device)
        logprob_parts.append(sums.index_add(0, segments, weights * chosen))
        value_parts.append(values)
        if with_entropy:
            token_entropy = -(token_logprobs.exp() * token_logprobs).sum(-1)
            counts = torch.tensor(answer_lengths, device=device)
            per_member = torch.zeros(len(members), dtype=token_entropy.dtype, device=device)
            entropy_parts.append(per_member.index_add(0, segments, token_entropy) / counts)
        order += [i for _, i in members]
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    inverse = inverse.to(device)
    logprobs = torch.cat(logprob_parts)[inverse]
    values = torch.cat(value_parts)[inverse]
    entropy = torch.cat(entropy_parts).mean() if entropy_parts else torch.zeros((), device=device)
    tokens = torch.cat([token_parts[i] for i in range(len(batch))])
    return Scores(logprobs, values, entropy, tokens)


def _scoring_batches(transitions: Sequence[Transition], size: int) -> list[list[Transition]]:
    """Whole chains, the longest first, in batches of about ``size`` transitions (a longer chain
    is a batch of its own)."""

    def length(chain: list[int]) -> int:
        last = transitions[chain[-1]]
        return len(last.prompt_ids) + len(last.response_ids)

    chains = sorted(packed_rows(transitions), key=lambda chain: -length(chain))
    batches: list[list[Transition]] = []
    for chain in chains:
        if batches and len(batches[-1]) + len(chain) <= size:
            batches[-1] += [transitions[i] for i in chain]
        else:
            batches.append([transitions[i] for i in chain])
    return batches


def mini_batches(order: Sequence[int], size: int, count: int) -> list[list[int]]:
    """``order`` cut into ``count`` mini-batches: consecutive slices of ``size`` when that gives
    ``count`` of them, else ``count`` near-equal slices (each index once; empty ones when there
    are fewer indices than batches)."""
    if math.ceil(len(order) / size) == count:
        return [list(order[start : start + size]) for start in range(0, len(order), size)]
    return [
        list(order[i * len(order) // count : (i + 1) * len(order) // count]) for i in range(count)
    ]


def compute_gae(
    transitions: Sequence[Transition], gamma: float, lam: float, bootstrap: Sequence[float]
) -> None:
    """GAE along the buffer, in place. ``bootstrap[i]`` is the value after transition ``i`` when it
    is not done (the next transition's value within an episode; 0 or the next episode's first value
    at an episode's end, depending on ``episode_end``)."""
    gae = 0.0
    for i in reversed(range(len(transitions))):
        t = transitions[i]
        mask = 0.0 if t.done else 1.0
        delta = t.reward + gamma * bootstrap[i] * mask - t.old_value
        gae = delta + gamma * lam * mask * gae
        t.advantage = gae
        t.ret = gae + t.old_value


# -- the trainer --------------------------------------------------------------------------------


class PPOTrainer:
    """Holds the policy, value head, optimizer, schedule, RNGs and counters of one RL run."""

    def __init__(self, config: RLExperiment, policy: Policy | None = None, accelerator: Any = None):
        from accelerate import Accelerator

        self.config = config
        self.accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.policy = policy or load_policy(config.model)
        ppo = config.ppo
        torch.manual_seed(config.seed)
        value_head = ValueHead(hidden_size(self.policy.model), ppo.value_hidden_sizes)
        actor_critic = ActorCritic(
            self.policy.model, value_head.to(self.policy.device), config.ppo.critic_backprop
        )
        params = [p for p in actor_critic.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(
            params, lr=ppo.learning_rate, eps=ppo.adam_eps, weight_decay=ppo.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=ppo.lr_max_steps, eta_min=ppo.lr_min
        )
        self.actor_critic, self.optimizer = self.accelerator.prepare(actor_critic, self.optimizer)
        # generation uses the plain model inside; training forwards go through the (possibly
        # DDP-wrapped) actor-critic, so gradients are averaged across processes
        unwrapped = self.accelerator.unwrap_model(self.actor_critic)
        self.policy.model, self.value_head = unwrapped.model, unwrapped.value_head
        self.reference = None
        if ppo.kl_coef > 0:
            self.reference = load_policy(config.model)
            self.reference.model.requires_grad_(False).eval()
            self.reference_scorer = ActorCritic(self.reference.model, self.value_head)
        n_params = count_parameters(unwrapped)
        self.tracker = ComputeTracker.for_task(
            n_params, config.env.task, init_tokens=config.init_tokens
        )
        self.update = 0
        self.rank = self.accelerator.process_index
        self.rng = random.Random(config.seed * 7919 + self.rank)

    # -- one update -----------------------------------------------------------------------------
    def collect(self) -> tuple[list[Transition], list[Episode]]:
        """Roll out this process's episodes for the current update and flatten them."""
        ppo, env = self.config.ppo, self.config.env
        sampling = SamplingConfig(ppo.max_new_tokens, ppo.temperature, ppo.top_p)
        seed = (self.config.seed * 1_000_003 + self.update) * 64 + self.rank
        responder = PolicyResponder(self.policy, sampling, seed=seed)
        self.actor_critic.eval()
        episodes = rollout(
            lambda: make_task_env(env.task, **env.env_kwargs()),  # type: ignore[arg-type]
            responder,
            ppo.episodes_per_update,
            batch_size=ppo.rollout_batch,
            seed=seed * 10_007,
        )
        self.tracker.add_generation(responder.prompt_tokens, responder.generated_tokens)
        transitions = []
        for episode in episodes:
            for index, turn in enumerate(episode.turns):
                response = turn.response
                transitions.append(
                    Transition(
                        episode=episode.index,
                        turn=index,
                        prompt_ids=response.prompt_ids,
                        response_ids=response.response_ids,
                        thought_length=thought_length(self.policy.tokenizer, response.response_ids),
                        image=turn.image,
                        reward=turn.reward,
                        done=turn.terminated or turn.truncated,
                        terminated=turn.terminated,
                    )
                )
        if ppo.pack_turns:
            link_turns(transitions)
        return transitions, episodes

    @torch.no_grad()
    def prepare(self, transitions: list[Transition]) -> None:
        """Old log-probs, values (and reference log-probs), then GAE and normalised advantages."""
        ppo = self.config.ppo
        unwrapped = self.accelerator.unwrap_model(self.actor_critic)
        unwrapped.eval()
        # no gradients here, and a row's score does not depend on the rows scored with it: take
        # the chains by length (the longest first), so that each pass wastes little on padding
        for batch in _scoring_batches(transitions, ppo.mini_batch_size):
            scores = score(self.policy, unwrapped, batch, ppo.thought_prob_coef)
            if self.reference is not None:
                ref = score(self.reference, self.reference_scorer, batch, ppo.thought_prob_coef)
                for t, r in zip(batch, ref.logprobs.tolist(), strict=True):
                    t.ref_logprob = r
            for t, lp, v in zip(
                batch, scores.logprobs.tolist(), scores.values.tolist(), strict=True
            ):
                t.old_logprob, t.old_value = lp, v
            if ppo.ratio == "token":
                lengths = [len(t.response_ids) for t in batch]
                tokens = scores.token_logprobs.detach().cpu().split(lengths)
                for t, tok in zip(batch, tokens, strict=True):
                    t.old_token_logprobs = tok
        self.tracker.add_forward(sum(len(t.prompt_ids) + len(t.response_ids) for t in transitions))
        bootstrap = []
        for i, t in enumerate(transitions):
            following = transitions[i + 1] if i + 1 < len(transitions) else None
            if following is None:
                bootstrap.append(0.0)
            elif following.episode == t.episode or ppo.episode_end == "paper":
                bootstrap.append(following.old_value)
            else:
                bootstrap.append(0.0)
        if ppo.episode_end == "paper":  # the official quirk: truncation is not "done"
            for t in transitions:
                t.done = t.terminated
        compute_gae(transitions, ppo.gamma, ppo.gae_lambda, bootstrap)
        if ppo.normalize_advantages and len(transitions) > 1:
            advantages = np.array([t.advantage for t in transitions])
            mean, std = advantages.mean(), advantages.std()
            for t in transitions:
                t.advantage = float((t.advantage - mean) / (std + 1e-8))

    def optimise(self, transitions: list[Transition]) -> dict[str, float]:
        """``ppo_epochs`` passes of clipped PPO over shuffled mini-batches."""
        ppo = self.config.ppo
        self.actor_critic.train()
        stats: dict[str, list[float]] = {}
        steps_per_optimizer = ppo.grad_accumulation
        micro = 0
        count = self._mini_batch_count(len(transitions))
        chains = packed_rows(transitions)  # one transition each unless turns were linked
        for _ in range(ppo.ppo_epochs):
            shuffled = list(chains)
            self.rng.shuffle(shuffled)
            order = [i for chain in shuffled for i in chain]
            for chunk in mini_batches(order, ppo.mini_batch_size, count):
                # a process with fewer transitions than batches still takes part in every
                # synchronised backward pass, with a zero-weighted loss
                batch = [transitions[i] for i in (chunk or order[:1])]
                loss, info = self._loss(batch)
                self.accelerator.backward(loss * (1.0 if chunk else 0.0) / steps_per_optimizer)
                micro += 1
                if chunk:
                    for key, value in info.items():
                        stats.setdefault(key, []).append(value)
                if micro % steps_per_optimizer == 0:
                    self._step()
        if micro % steps_per_optimizer:
            self._step()
        tokens = sum(len(t.prompt_ids) + len(t.response_ids) for t in transitions)
        self.tracker.add_ppo_update(tokens, ppo.ppo_epochs)
        self.scheduler.step()
        means = {k: float(np.mean(v)) if v else 0.0 for k, v in stats.items()}
        return means | {"mini_batches_per_epoch": float(count)}

    def _mini_batch_count(self, n_transitions: int) -> int:
        """Mini-batches per epoch: ``ceil(n / mini_batch_size)``, or on several processes the
        largest such count of any process. Every backward pass synchronises the gradients of all
        processes, so they must all make the same number of passes, whatever their rollouts
        gave them (episodes end after different numbers of turns)."""
        local = math.ceil(n_transitions / self.config.ppo.mini_batch_size)
        if self.accelerator.num_processes == 1:
            return local
        counts = self.accelerator.gather(torch.tensor([local], device=self.policy.device))
        return int(counts.max())

    def _step(self) -> None:
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.accelerator.clip_grad_norm_(params, self.config.ppo.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _loss(self, batch: list[Transition]) -> tuple[torch.Tensor, dict[str, float]]:
        ppo = self.config.ppo
        device = self.policy.device
        scores = score(
            self.policy,
            self.actor_critic,
            batch,
            ppo.thought_prob_coef,
            with_entropy=ppo.entropy_coef > 0,
        )
        logprobs, values, entropy = scores.logprobs, scores.values, scores.entropy
        advantages = torch.tensor([t.advantage for t in batch], device=device)
        returns = torch.tensor([t.ret for t in batch], device=device)
        old_values = torch.tensor([t.old_value for t in batch], device=device)

        if ppo.ratio == "token":
            policy_loss, log_ratio = self._token_policy_loss(batch, scores.token_logprobs)
        else:
            old = torch.tensor([t.old_logprob for t in batch], device=device)
            log_ratio = logprobs - old
            ratio = log_ratio.exp()
            unclipped = -advantages * ratio
            clipped = -advantages * ratio.clamp(1 - ppo.clip_eps, 1 + ppo.clip_eps)
            if (ratio > ppo.ratio_guard).any():  # the official safeguard: only the clipped term
                policy_loss = clipped.mean()
            else:
                policy_loss = torch.max(unclipped, clipped).mean()

        values_clipped = old_values + (values - old_values).clamp(
            -ppo.value_clip_eps, ppo.value_clip_eps
        )
        value_loss = (
            0.5 * torch.max((values - returns) ** 2, (values_clipped - returns) ** 2).mean()
        )
        loss = policy_loss + ppo.value_loss_coef * value_loss - ppo.entropy_coef * entropy
        if self.reference is not None:
            ref = torch.tensor([t.ref_logprob for t in batch], device=device)
            loss = loss + ppo.kl_coef * (logprobs - ref).mean()
        with torch.no_grad():  # over answers, or over tokens with ratio="token"
            ratio = log_ratio.exp()
            clip_fraction = ((ratio - 1).abs() > ppo.clip_eps).float().mean().item()
            approx_kl = ((ratio - 1) - log_ratio).mean().item()
        info = {
            "policy_loss": policy_loss.item(),
            "value_loss": value_loss.item(),
            "clip_fraction": clip_fraction,
            "approx_kl": approx_kl,
        }
        if ppo.entropy_coef > 0:  # computed only when it is in the loss; never logged as a fake 0
            info["entropy"] = float(entropy)
        return loss, info

    def _token_policy_loss(
        self, batch: list[Transition], token_logprobs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clipped PPO per answer token (``ratio="token"``): each token's ratio against its old
        log-prob, the answer's advantage, thought tokens weighted by ``thought_prob_coef``, averaged
        over each answer and then over the batch. Returns the loss and the tokens' log-ratios."""
        ppo = self.config.ppo
        device = token_logprobs.device
        if any(t.old_token_logprobs is None for t in batch):
            raise RuntimeError("ratio='token' needs old token log-probs: call prepare() first")
        old = torch.cat([t.old_token_logprobs for t in batch]).to(device)  # type: ignore[misc]
        lengths = torch.tensor([len(t.response_ids) for t in batch])
        segments = torch.repeat_interleave(torch.arange(len(batch)), lengths).to(device)
        weights = torch.cat([thought_weights(t, ppo.thought_prob_coef) for t in batch]).to(device)
        advantages = torch.tensor([t.advantage for t in batch], device=device)[segments]
        log_ratio = token_logprobs - old
        ratio = log_ratio.exp()
        per_token = torch.max(
            -advantages * ratio,
            -advantages * ratio.clamp(1 - ppo.clip_eps, 1 + ppo.clip_eps),
        )
        zeros = torch.zeros(len(batch), dtype=per_token.dtype, device=device)
        per_answer = zeros.index_add(0, segments, weights * per_token) / zeros.index_add(
            0, segments, weights
        )
        return per_answer.mean(), log_ratio

    # -- bookkeeping ----------------------------------------------------------------------------
    def rollout_stats(self, transitions: list[Transition], episodes: list[Episode]) -> dict:
        rewards = [t.reward for t in transitions]
        stats = {
            "reward_mean": float(np.mean(rewards)),
            "episode_reward_mean": float(np.mean([e.total_reward for e in episodes])),
            "success_rate": float(np.mean([e.success for e in episodes])),
            "turns_per_episode": len(transitions) / max(len(episodes), 1),
            "value_mean": float(np.mean([t.old_value for t in transitions])),
            "return_mean": float(np.mean([t.ret for t in transitions])),
            "response_tokens_mean": float(np.mean([len(t.response_ids) for t in transitions])),
        }
        outcomes = [t.info.get("outcome") for e in episodes for t in e.turns]
        if TASKS[self.config.env.task][1] and self.config.env.task.startswith("gp"):
            stats["recognition_accuracy"] = 1 - outcomes.count("INCORRECT_VISION") / len(outcomes)
        return self._gather_means(stats)

    def _gather_means(self, stats: dict[str, float]) -> dict[str, float]:
        if self.accelerator.num_processes == 1:
            return stats
        keys = sorted(stats)
        tensor = torch.tensor([stats[k] for k in keys], device=self.accelerator.device)
        mean = self.accelerator.reduce(tensor, reduction="mean")
        return dict(zip(keys, mean.tolist(), strict=True))

    def compute_metrics(self) -> dict[str, float | int]:
        """GFLOPs and token counts of all processes together (Init counted once)."""
        if self.accelerator.num_processes == 1:
            return self.tracker.metrics()
        from accelerate.utils import gather_object

        states = gather_object([self.tracker.state_dict()])
        total = copy.deepcopy(self.tracker)
        total.load_state_dict(states[0])
        for state in states[1:]:
            other = copy.deepcopy(self.tracker)
            other.load_state_dict(state)
            total.merge(other)
        return total.metrics()

    def state_dict(self) -> dict[str, Any]:
        return {
            "update": self.update,
            "value_head": self.value_head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "tracker": self.tracker.state_dict(),
            "rng": self.rng.getstate(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.update = state["update"]
        self.value_head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.tracker.load_state_dict(state["tracker"])
        self.rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])

    def save(self, folder: Path) -> None:
        """Policy (loadable by ``load_policy``) plus the trainer state needed to resume exactly."""
        self.policy.save(folder / "policy")
        torch.save(self.state_dict(), folder / f"trainer_state_rank{self.rank}.pt")

    def load(self, folder: Path) -> None:
        from safetensors.torch import load_file

        weights = folder / "policy" / "model.safetensors"
        adapter = folder / "policy" / "adapter_model.safetensors"
        unwrapped = self.policy.model
        if adapter.exists():
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(unwrapped, load_file(str(adapter)))
        else:
            unwrapped.load_state_dict(load_file(str(weights)), strict=False)
        state = torch.load(
            folder / f"trainer_state_rank{self.rank}.pt", map_location="cpu", weights_only=False
        )
        self.load_state_dict(state)


def _evaluate(
    trainer: PPOTrainer, run: Run, step: int, start: dict[str, torch.Tensor] | None = None
) -> None:
    from sftvrl.eval import evaluate_task

    config = trainer.config
    settings, env = config.eval, config.env
    sampling = SamplingConfig(settings.max_new_tokens, settings.temperature)
    trainer.actor_critic.eval()
    responder = PolicyResponder(trainer.policy, sampling, seed=settings.seed)
    for split in settings.splits:
        options = {
            "mode": env.mode,
            "prompt": env.prompt,
            "verify_iter": env.verify_iter,
            "image_size": env.image_size,
            "n_episodes": settings.n_episodes,
            "seed": settings.seed,
            "batch_size": settings.batch_size,
        }
        summary = evaluate_task(responder, env.task, split, **options).summary()
        record = {k: v for k, v in summary.items() if not k.startswith("settings.")}
        record |= {"eval_split": split, "gflops": trainer.compute_metrics()["gflops"]}
        if start is not None:
            record["drift"] = parameter_drift(trainer.policy.model, start)
        if trainer.accelerator.is_main_process:
            run.log(record, step=step)


def start_evaluation(source: Path, splits: list[str]) -> list[dict[str, Any]]:
    """The records of ``source``'s last evaluation, one per split, as update 0 of a run starting
    from its checkpoint (no compute, no drift yet); raises when a split was not evaluated."""
    from sftvrl.runs import read_metric_records

    evals = [r for r in read_metric_records(source) if "eval_split" in r]
    last = max((r["step"] for r in evals), default=None)
    by_split = {r["eval_split"]: r for r in evals if r["step"] == last}
    missing = [split for split in splits if split not in by_split]
    if missing:
        raise ValueError(f"{source} has no last evaluation of splits {missing} to start from")
    dropped = {"step", "time", "tokens", "gflops", "drift"}
    return [
        {k: v for k, v in by_split[split].items() if k not in dropped}
        | {"gflops": 0.0, "drift": 0.0}
        for split in splits
    ]


def _log_start_evaluation(run: Run, source: Path, splits: list[str]) -> None:
    copied_from = os.path.relpath(source.resolve(), run.path.resolve())
    for record in start_evaluation(source, splits):
        run.log(record | {"eval_copied_from": copied_from}, step=0)


@dataclass
class RLResult:
    run: Run | None
    trainer: PPOTrainer
    final_dir: Path | None


def train_ppo(config: RLExperiment, *, stop_after: int | None = None) -> RLResult:
    """Run (or resume) PPO; ``stop_after`` ends early after that many updates (tests, kills)."""
    trainer = PPOTrainer(config)
    accelerator = trainer.accelerator
    if accelerator.is_main_process:
        run = Run.create(config.output, config.name, config, seed=config.seed)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:  # read-only view: checkpoints and metrics only
        run = Run(Path(config.output) / config.name, config, config.seed, {})
    start = snapshot(trainer.policy.model)  # the starting weights, before a resume restores any
    checkpoint = run.latest_checkpoint()
    if checkpoint is not None:
        trainer.load(checkpoint)
        logger.info("resumed %s at update %d", run.path, trainer.update)
    done_evals = {r["step"] for r in run.metric_records() if "eval_split" in r}
    evaluate_every = config.eval.every
    if evaluate_every and 0 not in done_evals and trainer.update == 0:
        if config.eval.start_eval_from:
            if accelerator.is_main_process:
                _log_start_evaluation(run, Path(config.eval.start_eval_from), config.eval.splits)
        else:
            _evaluate(trainer, run, 0, start)
    updates = 0
    while trainer.update < config.ppo.num_updates:
        transitions, episodes = trainer.collect()
        trainer.prepare(transitions)
        stats = trainer.rollout_stats(transitions, episodes)
        losses = trainer.optimise(transitions)
        trainer.update += 1
        updates += 1
        record = stats | trainer._gather_means(losses)
        record |= {"lr": trainer.scheduler.get_last_lr()[0], **trainer.compute_metrics()}
        if accelerator.is_main_process:
            run.log(record, step=trainer.update)
        last = trainer.update == config.ppo.num_updates
        if evaluate_every and (trainer.update % evaluate_every == 0 or last):
            _evaluate(trainer, run, trainer.update, start)
        if config.save_every and (trainer.update % config.save_every == 0 or last):
            _save_checkpoint(trainer, run)
        if stop_after is not None and updates >= stop_after:
            break
    final_dir = None
    if trainer.update == config.ppo.num_updates:
        final_dir = run.path / "final"
        if accelerator.is_main_process:
            trainer.policy.save(final_dir)
    accelerator.wait_for_everyone()
    return RLResult(run, trainer, final_dir)


def _save_checkpoint(trainer: PPOTrainer, run: Run) -> None:
    accelerator = trainer.accelerator
    folder = run.checkpoint_dir(trainer.update)
    if accelerator.num_processes == 1:
        with run.checkpoint(trainer.update) as tmp:
            trainer.save(tmp)
        return
    # several processes: each writes its own trainer state, the main one the policy and marker
    folder.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        trainer.save(folder)
    else:
        torch.save(trainer.state_dict(), folder / f"trainer_state_rank{trainer.rank}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        run.mark_checkpoint_complete(trainer.update)
    accelerator.wait_for_everyone()


__all__ = [
    "PPOConfig",
    "PPOTrainer",
    "RLEnvConfig",
    "RLEval",
    "RLExperiment",
    "RLResult",
    "Transition",
    "ValueHead",
    "compute_gae",
    "link_turns",
    "packed_rows",
    "score",
    "thought_length",
    "train_ppo",
]
