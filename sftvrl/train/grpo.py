"""The GRPO arm: our environments, with the paper's sequential revision, inside TRL's ``GRPOTrainer``.

TRL's ``GRPOTrainer`` scores one completion per prompt and normalises the rewards within each group
of ``num_generations`` completions of the same prompt. A multi-turn episode becomes one completion
through TRL's custom ``rollout_func`` (trl 1.16):

- **Prompts.** The dataset has one row per start state (:func:`build_prompt_dataset`): the task's
  first user turn, whose message also carries ``"episode": {"seed", "point"}``, because
  ``rollout_func`` receives only the prompts (each repeated ``num_generations`` times), not the
  other columns. GP-VL / V-IRL-VL rows also hold the start state's ``image``; TRL turns it into the
  ``pixel_values`` of its loss pass.
- **Rollouts.** :func:`make_rollout_func` plays every prompt of a generation batch as one episode
  of our batched rollout engine (:func:`sftvrl.train.rollout.rollout`): model turn, verifier
  feedback turn, model turn, ... until success or the verification budget. The responder is a
  :class:`TokenResponder` on the trainer's current weights.
- **One token sequence per episode.** :class:`TokenResponder` keeps each episode as the exact token
  sequence the model conditioned on: the first prompt as the chat template renders it, then the
  sampled answer ids as they were sampled, then the chat template's tokens for the next user turn.
  It generates the next answer from those very ids instead of re-rendering the chat from text
  (re-tokenising sampled text does not give back the sampled ids: non-canonical BPE splits, broken
  UTF-8). So every token TRL trains on sits in exactly the context it was sampled in.
  ``rollout_func`` returns the first prompt as ``prompt_ids``, the rest as ``completion_ids`` and
  ``env_mask`` = 1 on sampled tokens, 0 on the tokens the environment and template inserted (the
  feedback turns, turn delimiters, the closing token of an answer cut at ``max_new_tokens``). TRL
  multiplies its loss mask by ``env_mask`` (it calls it ``tool_mask``), so only sampled tokens
  are trained, and ``completions/mean_length`` counts only them.
- **Reward.** :class:`EpisodeReward` reads the per-turn env rewards that ``rollout_func`` passes
  as extra fields. Default (``reward="return"``): the discounted return of the episode from its
  first turn, ``sum_t gamma^t r_t`` with the paper's ``gamma = 0.9``. The paper's PPO maximises
  the same quantity but assigns credit per turn (GAE, ``lambda = 0.95``, a learned value); GRPO has
  one scalar per completion, so every answer of an episode gets the episode's group-normalised
  advantage: a failed first answer followed by a correct revision is rewarded less than a correct
  first answer (5 vs -1 + 0.9 * 5 = 3.5 in GeneralPoints) but more than a failed episode.
  ``reward="success"`` gives 1 for a solved episode and 0 otherwise (no shaping by the verdicts).

V-IRL: one GRPO episode is one rail point's sequential revision. The route before the point is
walked with the expert's actions, which is exactly the state the policy would be in (a wrong
action is never executed, and the prompt at a point depends only on the route and the point); the
episode ends at the point's first correct action, at the destination's correct ``stop()``, or
when the point's budget runs out. The paper restarts the chat at every point (so one route is
several conversations, which cannot be one completion), and its PPO carries credit across points
with GAE; here the route-level coupling (failing a point ends the route) is not in the reward.

Sampling log-probabilities: TRL's own non-vLLM generation returns none, and it uses them only for
off-policy sequence masking (``off_policy_mask_threshold``). ``sampling_logprobs=None`` (default)
computes them only then, from the processed scores of ``generate`` (temperature and top-p
applied), 0.0 on environment tokens.

Multi-process (``accelerate launch`` / ``torchrun``): TRL gives every process its slice of a
generation batch; each process plays its slice with its own sampling seed, and the compute counts
are summed over processes. Not supported: vLLM generation; episodes with more than one image (a
vision episode shows one: GP-VL's table, or the view grid of a V-IRL-VL point).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from transformers import TrainerCallback

from sftvrl.chat import text_of, turn
from sftvrl.compute import ComputeTracker, count_parameters
from sftvrl.data import TASKS, make_task_env
from sftvrl.models import ModelConfig, Policy, ensure_trainable_4bit, load_policy
from sftvrl.runs import CHECKPOINTS_DIR, Run
from sftvrl.train.rollout import Episode, Request, Response, rollout

logger = logging.getLogger(__name__)

FINAL_DIR = "final"
COMPUTE_FILE = "compute.json"
ROLLOUTS_FILE = "rollouts.json"
EPISODE_KEY = "episode"
"""Key of the first user message that names the episode's start state (``seed``, ``point``)."""
REWARD_KINDS = ("return", "success")
_DEFAULT_VERIFY_ITER = {"general_points": 5, "virl": 2}


# -- configuration ---------------------------------------------------------------------------


@dataclass
class GRPOArmConfig:
    """Everything the GRPO arm needs besides the model: environment, reward, sampling, TRL knobs."""

    # environment (the same options as the PPO and evaluation)
    task: str = "gp-l"
    split: str = "id"
    verify_iter: int | None = None
    """None: the paper's setting (5 for GeneralPoints, 2 for V-IRL)."""
    mode: str = "exact"
    prompt: str = "paper"
    image_size: int = 112
    """GP-VL table width / V-IRL-VL view size, in pixels."""

    # prompts
    n_prompts: int = 256
    """Rows of the prompt dataset: start states (GP: hands; V-IRL: rail points of routes)."""
    data_seed: int = 10_000
    """Row ``i`` resets its route/hand with seed ``data_seed + i`` (away from evaluation's 42...)."""

    # reward
    reward: str = "return"
    """``"return"``: discounted sum of the env's per-turn rewards; ``"success"``: 1 or 0."""
    gamma: float = 0.9
    """Discount of ``reward="return"`` (the paper's PPO gamma)."""

    # sampling
    num_generations: int = 4
    """Episodes per prompt (the GRPO group)."""
    max_new_tokens: int = 64
    """Per answer (turn)."""
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    """0 = no top-k cut (the policy is trained on the full softmax at ``temperature``)."""
    rollout_batch_size: int | None = None
    """Episodes advanced together by the rollout engine; None = a whole generation batch."""
    micro_batch: int | None = None
    """Split each round's ``generate`` into chunks of this many sequences (memory)."""
    sampling_logprobs: bool | None = None
    """Return sampling log-probs to TRL: None = only when it uses them (off-policy masking)."""

    # optimisation (TRL GRPOConfig)
    max_steps: int = 100
    batch_size: int = 8
    """Completions (episodes) per device per micro-step; a multiple of ``num_generations``."""
    gradient_accumulation: int = 1
    learning_rate: float = 1e-5
    lr_scheduler: str = "constant"
    warmup: float = 0.0
    """Linear warm-up: a number of steps, or a fraction of ``max_steps`` when below 1."""
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    beta: float = 0.0
    """KL coefficient against the starting policy (0: no reference model, TRL's default)."""
    epsilon: float = 0.2
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    num_iterations: int = 1
    off_policy_mask_threshold: float | None = None
    gradient_checkpointing: bool = True
    """TRL's default; saves memory on big models, costs time on tiny ones."""

    # logging, checkpoints, evaluation
    log_every: int = 1
    save_every: int = 0
    """Save a resumable checkpoint every this many steps; 0 = never."""
    keep_checkpoints: int = 2
    eval_every: int = 0
    """Evaluate on ``eval_splits`` every this many steps (and at the end); 0 = never."""
    eval_splits: list[str] = field(default_factory=lambda: ["id", "rule_ood"])
    eval_episodes: int = 64
    eval_batch_size: int = 32
    eval_seed: int = 42
    init_tokens: int = 0
    """Training tokens that made the starting checkpoint (the FLOPs axis starts there)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {sorted(TASKS)}")
        if self.reward not in REWARD_KINDS:
            raise ValueError(f"unknown reward {self.reward!r}; expected one of {REWARD_KINDS}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.temperature <= 0:
            raise ValueError(
                f"temperature must be > 0 (GRPO compares different samples of a prompt), "
                f"got {self.temperature}"
            )
        if self.num_generations < 2:
            raise ValueError(
                f"num_generations must be at least 2 (GRPO's baseline is the group mean), "
                f"got {self.num_generations}"
            )
        if self.n_prompts < 1 or self.max_new_tokens < 1:
            raise ValueError("n_prompts and max_new_tokens must be at least 1")

    @property
    def family(self) -> str:
        return TASKS[self.task][0]

    @property
    def vision(self) -> bool:
        return TASKS[self.task][1]

    def env_kwargs(self, split: str | None = None) -> dict[str, Any]:
        """Keyword arguments of :func:`sftvrl.data.make_task_env` for this task."""
        kwargs: dict[str, Any] = {"split": split or self.split, "mode": self.mode}
        kwargs["prompt"] = self.prompt
        kwargs["verify_iter"] = self.verify_iter or _DEFAULT_VERIFY_ITER[self.family]
        if self.vision:
            key = "image_width" if self.family == "general_points" else "view_size"
            kwargs[key] = self.image_size
        return kwargs


@dataclass
class GRPOExperiment:
    """One GRPO run as ``sftvrl grpo`` reads it from YAML: model, GRPO arm, run folder."""

    model: ModelConfig = field(default_factory=ModelConfig)
    grpo: GRPOArmConfig = field(default_factory=GRPOArmConfig)
    output: str = "runs"
    name: str = "grpo"


@dataclass
class GRPOResult:
    run: Run
    policy: Policy
    final_dir: Path
    metrics: dict[str, Any]


# -- start states and the prompt dataset ------------------------------------------------------


@dataclass(frozen=True)
class StartState:
    """Where an episode starts: the env reset with ``seed``, then ``point`` expert steps (V-IRL)."""

    seed: int
    point: int = 0


class EpisodeEnv(gym.Wrapper):
    """Plays the episodes of a rollout from given start states, one conversation per episode.

    The rollout engine resets episode ``i`` with seed ``i`` (pass ``seed=0`` to it); this wrapper
    resets the task env at ``starts[i]`` instead. A V-IRL point's episode ends at the point's
    first correct action (``terminated``), where the env would restart the chat.
    """

    def __init__(self, env: gym.Env, starts: Sequence[StartState]) -> None:
        super().__init__(env)
        self.starts = list(starts)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is None or not 0 <= seed < len(self.starts):
            raise ValueError(f"EpisodeEnv resets by episode index 0..{len(self.starts) - 1}")
        start = self.starts[seed]
        observation, info = self.env.reset(seed=start.seed, options=options)
        for _ in range(start.point):
            answer = self.env.unwrapped.expert_response()
            observation, _, terminated, truncated, info = self.env.step(answer)
            if terminated or truncated or not info.get("new_conversation"):
                raise ValueError(
                    f"start state {start} does not exist: the expert's route ends before point "
                    f"{start.point}"
                )
        return observation, {**info, "new_conversation": True, "start": start}

    def step(self, action: str) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        if info.get("new_conversation") and not (terminated or truncated):
            terminated = True  # the point is passed: this episode is over
            info = {**info, "new_conversation": False, "point_passed": True}
        return observation, reward, terminated, truncated, info


def start_states(config: GRPOArmConfig) -> list[StartState]:
    """The dataset's start states: GP hands by seed; V-IRL every point of successive routes."""
    if config.family == "general_points":
        return [StartState(config.data_seed + i) for i in range(config.n_prompts)]
    env = make_task_env(config.task, **config.env_kwargs())  # type: ignore[arg-type]
    starts: list[StartState] = []
    seed = config.data_seed
    while len(starts) < config.n_prompts:
        _, info = env.reset(seed=seed)
        points = int(info["rail_length"])
        starts += [StartState(seed, point) for point in range(points)]
        seed += 1
    env.close()
    return starts[: config.n_prompts]


def _image(observation: Any) -> Any:
    from PIL import Image

    if isinstance(observation, np.ndarray) and observation.ndim == 3:
        return Image.fromarray(observation)
    raise ValueError("a vision task's observation must be an HxWx3 image")


def build_prompt_dataset(config: GRPOArmConfig) -> Any:
    """One row per start state: ``prompt`` (the first user turn, naming its start state) and,
    for vision tasks, ``image``. ``rollout_func`` replays each row's start state."""
    from datasets import Dataset

    starts = start_states(config)
    env = EpisodeEnv(make_task_env(config.task, **config.env_kwargs()), starts)  # type: ignore[arg-type]
    rows: dict[str, list[Any]] = {"prompt": []}
    if config.vision:
        rows["image"] = []
    for i, start in enumerate(starts):
        observation, info = env.reset(seed=i)
        message = turn("user", info["prompt"], vision=config.vision, image=config.vision)
        message[EPISODE_KEY] = {"seed": start.seed, "point": start.point}
        rows["prompt"].append([message])
        if config.vision:
            rows["image"].append(_image(observation))
    env.close()
    return Dataset.from_dict(rows)


def _start_of(prompt: Any) -> StartState:
    try:
        episode = prompt[0][EPISODE_KEY]
        return StartState(int(episode["seed"]), int(episode["point"]))
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(
            f"a GRPO prompt must be a chat whose first message has an {EPISODE_KEY!r} entry "
            "(build the dataset with sftvrl.train.grpo.build_prompt_dataset)"
        ) from err


# -- one token sequence per episode ------------------------------------------------------------


@dataclass
class Trace:
    """An episode as one token sequence: what the model conditioned on, turn after turn."""

    prompt_ids: list[int]
    """The first prompt, as the chat template renders it (TRL's ``prompt_ids``)."""
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    """1 on sampled tokens, 0 on tokens inserted by the environment / chat template."""
    logprobs: list[float] = field(default_factory=list)
    """Sampling log-probability of each completion token (0.0 on inserted tokens)."""
    pixel_values: torch.Tensor | None = None
    """Vision: this episode's image, as the processor prepared it (one row)."""
    turns: int = 0

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + self.completion_ids

    def extend(
        self, ids: Sequence[int], sampled: bool, logprobs: Sequence[float] | None = None
    ) -> None:
        self.completion_ids += list(ids)
        self.env_mask += [int(sampled)] * len(ids)
        self.logprobs += list(logprobs) if logprobs is not None else [0.0] * len(ids)


@dataclass
class TokenResponse(Response):
    """A :class:`Response` that also holds its episode's :class:`Trace` (updated in place)."""

    trace: Trace | None = None


class TokenResponder:
    """A model as a rollout responder that keeps each episode as one exact token sequence.

    The first turn of an episode (a one-message conversation) is rendered by the chat template;
    every later turn is the previous sequence, plus the sampled answer's ids, plus the template's
    tokens for the new user message (``suffix_ids``). Answers are sampled with Hugging Face
    ``generate`` from those ids, so the context of every sampled token is the sequence a trainer
    sees. Requires one conversation per episode (see :class:`EpisodeEnv`) and a chat template that
    renders a conversation as a prefix of its continuation (ChatML-style templates do).
    """

    def __init__(
        self,
        policy: Policy,
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        micro_batch: int | None = None,
        logprobs: bool = False,
        seed: int = 0,
    ) -> None:
        self.policy = policy
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.micro_batch = micro_batch
        self.logprobs = logprobs
        self.seed = seed
        self.calls = 0
        self.prompt_tokens = 0
        """Tokens prefilled by ``generate`` (every round re-reads its whole prompt)."""
        self.generated_tokens = 0
        self._traces: dict[int, Trace] = {}
        self._suffixes: dict[str, list[int]] = {}
        tokenizer = policy.tokenizer
        stops = {tokenizer.eos_token_id}
        generation_eos = getattr(_base(policy.model).generation_config, "eos_token_id", None)
        if isinstance(generation_eos, int):
            stops.add(generation_eos)
        elif generation_eos:
            stops.update(generation_eos)
        self.stop_ids = {i for i in stops if i is not None}
        if not self.stop_ids:
            raise ValueError("the tokenizer has no eos token: answers could never end")
        eos = tokenizer.eos_token_id
        self.closing_id = eos if eos is not None else min(self.stop_ids)
        """Closes an answer cut at ``max_new_tokens`` (the template's end of turn)."""
        self._generations = 0

    # -- the template pieces -----------------------------------------------------------------

    def suffix_ids(self, text: str) -> list[int]:
        """Template tokens after a finished answer, up to the cue of the next answer, around a
        user message ``text`` (e.g. ``"\\n<|im_start|>user\\n{text}<|im_end|>\\n<|im_start|>assistant\\n"``)."""
        cached = self._suffixes.get(text)
        if cached is not None:
            return cached
        vision = self.policy.vision
        dummy = [turn("user", "x", vision=vision), turn("assistant", "y", vision=vision)]
        prefix = self._tokens(self.policy.render(dummy, add_generation_prompt=False))
        full = self._tokens(self.policy.render([*dummy, turn("user", text, vision=vision)]))
        ends = [i for i, token in enumerate(prefix) if token in self.stop_ids]
        if not ends:
            raise ValueError("the chat template does not end an assistant turn with the eos token")
        prefix = prefix[: ends[-1] + 1]
        if full[: len(prefix)] != prefix:
            raise ValueError(
                "the chat template does not render a conversation as a prefix of its "
                "continuation; multi-turn episodes cannot be one token sequence with it"
            )
        suffix = full[len(prefix) :]
        self._suffixes[text] = suffix
        return suffix

    def _tokens(self, text: str) -> list[int]:
        return self.policy.tokenizer(text, add_special_tokens=False)["input_ids"]

    # -- answering -----------------------------------------------------------------------------

    def __call__(self, requests: Sequence[Request]) -> list[TokenResponse]:
        traces = self._traces_for(requests)
        size = self.micro_batch or len(requests) or 1
        responses: list[TokenResponse] = []
        for start in range(0, len(traces), size):
            chunk = traces[start : start + size]
            for trace, (ids, logprobs) in zip(chunk, self.sample(chunk), strict=True):
                prompt_ids = torch.tensor(trace.ids)
                trace.extend(ids, sampled=True, logprobs=logprobs)
                trace.turns += 1
                text = self.policy.tokenizer.decode(ids, skip_special_tokens=True)
                responses.append(
                    TokenResponse(text, prompt_ids, torch.tensor(ids, dtype=torch.long), trace)
                )
        self.calls += 1
        return responses

    def _traces_for(self, requests: Sequence[Request]) -> list[Trace]:
        """Each request's sequence up to the cue of its answer (new episodes rendered together)."""
        fresh = [i for i, r in enumerate(requests) if len(r.conversation) == 1]
        if fresh:
            conversations = [requests[i].conversation for i in fresh]
            images = [requests[i].image for i in fresh] if self.policy.vision else None
            batch = self.policy.chat_inputs(conversations, images)
            for row, i in enumerate(fresh):
                present = batch["attention_mask"][row].bool().cpu()
                ids = batch["input_ids"][row].cpu()[present].tolist()
                pixels = batch["pixel_values"][row : row + 1].cpu() if self.policy.vision else None
                self._traces[id(requests[i].env)] = Trace(ids, pixel_values=pixels)
        traces = []
        for request in requests:
            trace = self._traces.get(id(request.env))
            if trace is None:
                raise RuntimeError(
                    "a continued conversation whose episode this responder never saw"
                )
            if len(request.conversation) > 1:
                last = request.conversation[-1]
                if last["role"] != "user":
                    raise ValueError("a request must end with a user message")
                expected = 2 * trace.turns + 1
                if len(request.conversation) != expected:
                    raise RuntimeError(
                        f"the conversation has {len(request.conversation)} messages, its token "
                        f"sequence {expected}: the chat restarted inside an episode"
                    )
                closing = [] if trace.completion_ids[-1] in self.stop_ids else [self.closing_id]
                trace.extend(closing + self.suffix_ids(text_of(last)), sampled=False)
            traces.append(trace)
        return traces

    @torch.no_grad()
    def sample(self, traces: Sequence[Trace]) -> list[tuple[list[int], list[float] | None]]:
        """One answer per trace: sampled ids (ending with a stop token unless cut at
        ``max_new_tokens``) and, if asked, their sampling log-probabilities."""
        policy = self.policy
        tokenizer = policy.tokenizer
        device = policy.device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        width = max(len(trace.ids) for trace in traces)
        input_ids = torch.full((len(traces), width), pad, dtype=torch.long)
        attention = torch.zeros((len(traces), width), dtype=torch.long)
        for row, trace in enumerate(traces):
            ids = trace.ids
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        inputs: dict[str, Any] = {
            "input_ids": input_ids.to(device),
            "attention_mask": attention.to(device),
        }
        if policy.vision:
            pixels = [trace.pixel_values for trace in traces]
            if any(p is None for p in pixels):
                raise RuntimeError("a vision episode without its image")
            dtype = next(p for p in policy.model.parameters() if p.is_floating_point()).dtype
            inputs["pixel_values"] = torch.cat(pixels).to(device=device, dtype=dtype)  # type: ignore[arg-type]
        options: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "pad_token_id": pad,
            "eos_token_id": sorted(self.stop_ids),
            "use_cache": True,  # TRL turns the config's cache off for gradient checkpointing
            "return_dict_in_generate": True,
            "output_scores": self.logprobs,
        }
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed((self.seed * 1_000_003 + self._generations) % (2**63))
            self._generations += 1
            output = policy.model.generate(**inputs, **options)
        new = output.sequences[:, width:]
        logprobs = None
        if self.logprobs:
            steps = [
                scores.float().log_softmax(-1).gather(1, new[:, t : t + 1])
                for t, scores in enumerate(output.scores)
            ]
            logprobs = torch.cat(steps, dim=1).cpu()
        new = new.cpu()
        answers = []
        for row in range(len(traces)):
            ids = new[row].tolist()
            end = next((i + 1 for i, t in enumerate(ids) if t in self.stop_ids), len(ids))
            ids = ids[:end]
            self.prompt_tokens += int(attention[row].sum())
            self.generated_tokens += len(ids)
            answers.append((ids, logprobs[row, :end].tolist() if logprobs is not None else None))
        return answers


def _base(model: Any) -> Any:
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


# -- rollout_func and reward -----------------------------------------------------------------


@dataclass
class RolloutStats:
    """Counts of this run's rollouts so far (summed over processes)."""

    episodes: int = 0
    successes: int = 0
    model_tokens: int = 0
    env_tokens: int = 0


def episode_return(rewards: Sequence[float], gamma: float) -> float:
    """``sum_t gamma^t r_t`` over an episode's turns."""
    return float(sum(reward * gamma**t for t, reward in enumerate(rewards)))


class EpisodeReward:
    """GRPO's reward function: one scalar per episode from the env's per-turn rewards.

    ``kind="return"``: the discounted return (see the module docstring for why); ``"success"``:
    1.0 for a solved episode, else 0.0. Logs success rate, turns and return through TRL's
    ``log_metric`` (averaged over each logging window, across processes).
    """

    def __init__(self, kind: str = "return", gamma: float = 0.9) -> None:
        if kind not in REWARD_KINDS:
            raise ValueError(f"unknown reward {kind!r}; expected one of {REWARD_KINDS}")
        self.kind = kind
        self.gamma = gamma
        self.__name__ = "episode_reward"

    def __call__(
        self,
        completions: list[Any],
        turn_rewards: list[list[float]] | None = None,
        episode_success: list[bool] | None = None,
        log_metric: Callable[[str, float], None] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        if turn_rewards is None or episode_success is None:
            raise ValueError(
                "episode_reward needs the turn_rewards and episode_success fields of the GRPO "
                "arm's rollout_func (make_rollout_func)"
            )
        returns = [episode_return(rewards, self.gamma) for rewards in turn_rewards]
        if self.kind == "success":
            values = [float(bool(success)) for success in episode_success]
        else:
            values = returns
        if log_metric is not None and returns:
            n = len(returns)
            log_metric("episode/success", sum(map(bool, episode_success)) / n)
            log_metric("episode/return", sum(returns) / n)
            log_metric("episode/turns", sum(len(r) for r in turn_rewards) / n)
        return values


def _generation_seed(seed: int, step: int, process: int) -> int:
    """A sampling seed per (run seed, step, process): resumed runs redraw the same samples."""
    return int(np.random.SeedSequence([seed, step, process]).generate_state(1)[0])


def make_rollout_func(
    config: GRPOArmConfig,
    policy: Policy,
    *,
    tracker: ComputeTracker | None = None,
    stats: RolloutStats | None = None,
) -> Callable[[list[Any], Any], dict[str, Any]]:
    """TRL's ``rollout_func(prompts, trainer)``: play each prompt's episode with the trainer's
    current model; return one token sequence per prompt with its ``env_mask`` and outcome."""

    def rollout_func(prompts: list[Any], trainer: Any) -> dict[str, Any]:
        starts = [_start_of(prompt) for prompt in prompts]
        model = trainer.accelerator.unwrap_model(trainer.model)
        policy.model = model
        args = trainer.args
        wants_logprobs = config.sampling_logprobs
        if wants_logprobs is None:
            wants_logprobs = getattr(args, "off_policy_mask_threshold", None) is not None
        responder = TokenResponder(
            policy,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
            micro_batch=config.micro_batch,
            logprobs=wants_logprobs,
            seed=_generation_seed(
                config.seed, trainer.state.global_step, trainer.accelerator.process_index
            ),
        )
        kwargs = config.env_kwargs()

        def make_env() -> gym.Env:
            return EpisodeEnv(make_task_env(config.task, **kwargs), starts)  # type: ignore[arg-type]

        was_training = model.training
        model.eval()
        try:
            episodes = rollout(
                make_env,
                responder,
                len(prompts),
                batch_size=config.rollout_batch_size or len(prompts),
                seed=0,
            )
        finally:
            model.train(was_training)
        output = episodes_to_rollout(episodes, prompts, logprobs=wants_logprobs)
        _count(trainer, config, responder, output, tracker, stats)
        return output

    return rollout_func


def episodes_to_rollout(
    episodes: Sequence[Episode], prompts: Sequence[Any] | None = None, *, logprobs: bool = True
) -> dict[str, Any]:
    """TRL's rollout dict from episodes played by a :class:`TokenResponder`.

    ``prompt_ids`` / ``completion_ids`` / ``env_mask`` / ``logprobs`` per episode, plus the extra
    fields TRL passes to reward functions: ``turn_rewards``, ``episode_success``,
    ``episode_turns`` and ``episode_answers`` (the text of every answer, e.g. for a format
    bonus: TRL's ``completions`` also hold the feedback turns). With ``prompts``, checks that each episode started from its prompt's text.
    """
    output: dict[str, list[Any]] = {
        key: []
        for key in (
            "prompt_ids",
            "completion_ids",
            "env_mask",
            "logprobs",
            "turn_rewards",
            "episode_success",
            "episode_turns",
            "episode_answers",
        )
    }
    for episode in episodes:
        if not episode.turns:
            raise RuntimeError(f"episode {episode.index} has no turns")
        trace = getattr(episode.turns[-1].response, "trace", None)
        if not isinstance(trace, Trace):
            raise TypeError("episodes_to_rollout needs episodes played by a TokenResponder")
        if prompts is not None:
            wanted = text_of(prompts[episode.index][0])
            if episode.reset_info.get("prompt") != wanted:
                raise ValueError(
                    f"episode {episode.index} started from another prompt than its dataset row: "
                    "the dataset was built with other environment settings than the rollouts"
                )
        output["prompt_ids"].append(list(trace.prompt_ids))
        output["completion_ids"].append(list(trace.completion_ids))
        output["env_mask"].append(list(trace.env_mask))
        output["logprobs"].append(list(trace.logprobs))
        output["turn_rewards"].append([t.reward for t in episode.turns])
        output["episode_success"].append(bool(episode.success))
        output["episode_turns"].append(len(episode.turns))
        output["episode_answers"].append([t.response.text for t in episode.turns])
    result: dict[str, Any] = dict(output)
    if not logprobs:
        result["logprobs"] = None
    return result


def _count(
    trainer: Any,
    config: GRPOArmConfig,
    responder: TokenResponder,
    output: dict[str, Any],
    tracker: ComputeTracker | None,
    stats: RolloutStats | None,
) -> None:
    """Add this generation batch's tokens (summed over processes) to the compute tracker."""
    model_tokens = sum(map(sum, output["env_mask"]))
    all_completion = sum(map(len, output["completion_ids"]))
    buffer = sum(map(len, output["prompt_ids"])) + all_completion
    counts = torch.tensor(
        [
            responder.prompt_tokens,
            responder.generated_tokens,
            buffer,
            len(output["episode_success"]),
            sum(output["episode_success"]),
            model_tokens,
            all_completion - model_tokens,
        ],
        dtype=torch.float64,
        device=trainer.accelerator.device,
    )
    if trainer.accelerator.num_processes > 1:
        counts = trainer.accelerator.reduce(counts, reduction="sum")
    prompt, generated, buffer, episodes, successes, model, env = (int(x) for x in counts.tolist())
    if tracker is not None:
        tracker.add_generation(prompt, generated)
        tracker.add_ppo_update(buffer, epochs=config.num_iterations)
        args = trainer.args
        if config.beta != 0:
            tracker.add_forward(buffer)  # the reference model's pass
        generate_every = args.steps_per_generation * config.num_iterations
        if args.gradient_accumulation_steps % generate_every != 0:
            tracker.add_forward(buffer)  # TRL's old log-prob pass
    if stats is not None:
        stats.episodes += episodes
        stats.successes += successes
        stats.model_tokens += model
        stats.env_tokens += env


# -- run folder: metrics, checkpoints, evaluation ----------------------------------------------


class _RunLogger(TrainerCallback):
    """Mirrors TRL's logs into the run folder with tokens and GFLOPs; checkpoints the counts."""

    def __init__(self, run: Run, tracker: ComputeTracker, stats: RolloutStats) -> None:
        self.run, self.tracker, self.stats = run, tracker, stats

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if not logs or not state.is_world_process_zero or "train_loss" in logs:
            return  # the end-of-training summary is logged once, by train_grpo
        record = {k: v for k, v in logs.items() if isinstance(v, int | float)}
        record |= self.tracker.metrics() | {"tokens": self.tracker.rl_buffer_tokens}
        record |= {
            "episodes": self.stats.episodes,
            "model_tokens": self.stats.model_tokens,
            "env_tokens": self.stats.env_tokens,
        }
        self.run.log(record, step=state.global_step)

    def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.is_world_process_zero:
            folder = self.run.checkpoint_dir(state.global_step)
            self.tracker.save(folder / COMPUTE_FILE)
            (folder / ROLLOUTS_FILE).write_text(json.dumps(asdict(self.stats)) + "\n")
            self.run.mark_checkpoint_complete(state.global_step)


class _Evaluator(TrainerCallback):
    """Success on the evaluation splits during training (greedy, full episodes as in the paper)."""

    def __init__(
        self, run: Run, policy: Policy, config: GRPOArmConfig, tracker: ComputeTracker
    ) -> None:
        self.run, self.policy, self.config, self.tracker = run, policy, config, tracker
        self.done: set[int] = {r["step"] for r in run.metric_records() if "eval_split" in r}

    def evaluate(self, model: torch.nn.Module, step: int) -> None:
        from sftvrl.eval import (
            GPEvalSettings,
            VirlEvalSettings,
            evaluate_general_points,
            evaluate_virl,
        )
        from sftvrl.train.generation import PolicyResponder, SamplingConfig

        if step in self.done:
            return
        config = self.config
        common: dict[str, Any] = {
            "vision": config.vision,
            "verify_iter": config.env_kwargs()["verify_iter"],
            "mode": config.mode,
            "prompt": config.prompt,
            "seed": config.eval_seed,
            "batch_size": config.eval_batch_size,
        }
        was_training = model.training
        model.eval()
        self.policy.model = model
        responder = PolicyResponder(
            self.policy, SamplingConfig(config.max_new_tokens, 0.0), seed=config.eval_seed
        )
        try:
            for split in config.eval_splits:
                if config.family == "general_points":
                    settings = GPEvalSettings(
                        split=split,
                        n_episodes=config.eval_episodes,
                        image_width=config.image_size,
                        **common,
                    )
                    result = evaluate_general_points(responder, settings).summary()
                else:
                    settings = VirlEvalSettings(
                        split=split,
                        n_routes=config.eval_episodes,
                        view_size=config.image_size,
                        **common,
                    )
                    result = evaluate_virl(responder, settings).summary()
                record = {k: v for k, v in result.items() if not k.startswith("settings.")}
                record |= {"eval_split": split} | self.tracker.metrics()
                self.run.log(record, step=step)
        finally:
            model.train(was_training)
        self.done.add(step)

    def on_step_end(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        every = self.config.eval_every
        if every and state.is_world_process_zero and state.global_step % every == 0:
            self.evaluate(model, state.global_step)


# -- training --------------------------------------------------------------------------------


def grpo_args(config: GRPOArmConfig, output_dir: str | Path, *, cuda: bool) -> Any:
    """TRL's ``GRPOConfig`` for this arm (CPU flags of STACK.md §5.6 when there is no GPU)."""
    from trl import GRPOConfig

    turns = config.env_kwargs()["verify_iter"] + 1
    return GRPOConfig(
        output_dir=str(output_dir),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        num_generations=config.num_generations,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        beta=config.beta,
        epsilon=config.epsilon,
        loss_type=config.loss_type,
        scale_rewards=config.scale_rewards,
        num_iterations=config.num_iterations,
        off_policy_mask_threshold=config.off_policy_mask_threshold,
        gradient_checkpointing=config.gradient_checkpointing,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        max_completion_length=turns * config.max_new_tokens,
        logging_steps=config.log_every,
        save_strategy="steps" if config.save_every else "no",
        save_steps=config.save_every or 500,
        save_total_limit=config.keep_checkpoints,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


@contextlib.contextmanager
def _reference_source(model: Any, beta: float) -> Iterator[None]:
    """Where TRL loads the KL reference from: a snapshot of the starting weights.

    With ``beta > 0`` and no LoRA adapter (whose disabled state is the reference), TRL builds the
    reference model with ``from_pretrained(model.config._name_or_path)``: nothing for a tiny model
    built in memory, and stale weights for a model changed since it was loaded.
    """
    if beta == 0 or hasattr(model, "peft_config"):
        yield
        return
    config = model.config
    original = config._name_or_path
    with tempfile.TemporaryDirectory(prefix="sftvrl-grpo-reference-") as folder:
        model.save_pretrained(folder)
        config._name_or_path = folder
        try:
            yield
        finally:
            config._name_or_path = original


def train_grpo(
    config: GRPOArmConfig,
    model: Policy | ModelConfig,
    *,
    output: str | Path = "runs",
    name: str = "grpo",
    reward_funcs: Sequence[Callable[..., list[float | None]]] = (),
    callbacks: Sequence[TrainerCallback] = (),
) -> GRPOResult:
    """Run (or resume) GRPO on ``config.task`` from ``model``; the run lives in ``output/name``.

    ``model`` is a loaded :class:`Policy` (trained in place) or a :class:`ModelConfig` to load.
    ``reward_funcs`` are TRL reward functions added to the episode reward (e.g. a format bonus
    for a model too weak to ever produce a parsable answer, whose episode rewards never differ).
    Returns the run, the trained policy, its ``final/`` folder and the final metrics.
    """
    from accelerate import PartialState
    from trl import GRPOTrainer

    policy = model if isinstance(model, Policy) else load_policy(model)
    if policy.vision != config.vision:
        wanted = "a VLM" if config.vision else "a text model"
        got = "a VLM" if policy.vision else "a text model"
        raise ValueError(f"task {config.task!r} needs {wanted}, got {got}")
    ensure_trainable_4bit(policy.model)
    experiment = GRPOExperiment(model=policy.config, grpo=config, output=str(output), name=name)
    cuda = policy.device.type == "cuda"
    args = grpo_args(config, Path(output) / name / CHECKPOINTS_DIR, cuda=cuda)
    state = PartialState()  # set up by ``args`` (CPU flags included): the trainer's processes
    if state.is_main_process:
        run = Run.create(output, name, experiment, seed=config.seed)
    state.wait_for_everyone()
    if not state.is_main_process:  # read-only view: checkpoints and metrics only
        run = Run(Path(output) / name, experiment, config.seed, {})

    n_params = count_parameters(policy.model)
    tracker = ComputeTracker.for_task(n_params, config.task, init_tokens=config.init_tokens)
    checkpoint = run.latest_checkpoint()
    stats = RolloutStats()
    if checkpoint is not None:  # continue the counts where the checkpoint left them
        if (checkpoint / COMPUTE_FILE).is_file():
            tracker.load_state_dict(ComputeTracker.load(checkpoint / COMPUTE_FILE).state_dict())
        if (checkpoint / ROLLOUTS_FILE).is_file():
            stats = RolloutStats(**json.loads((checkpoint / ROLLOUTS_FILE).read_text()))
    with _reference_source(policy.model, config.beta):
        trainer = GRPOTrainer(
            model=policy.model,
            reward_funcs=[EpisodeReward(config.reward, config.gamma), *reward_funcs],
            args=args,
            train_dataset=build_prompt_dataset(config),
            processing_class=policy.processor if policy.vision else policy.tokenizer,
            callbacks=[_RunLogger(run, tracker, stats), *callbacks],
            rollout_func=make_rollout_func(config, policy, tracker=tracker, stats=stats),
        )
    evaluator = _Evaluator(run, policy, config, tracker)
    if config.eval_every:
        trainer.add_callback(evaluator)
    if checkpoint is not None:
        logger.info("resuming %s from %s", run.path, checkpoint)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    policy.model = trainer.accelerator.unwrap_model(trainer.model)
    step = trainer.state.global_step
    if config.eval_every and trainer.accelerator.is_main_process:
        evaluator.evaluate(policy.model, step)
    final_dir = run.path / FINAL_DIR
    metrics = {k: v for k, v in result.metrics.items() if isinstance(v, int | float)}
    metrics |= tracker.metrics() | {"episodes": stats.episodes}
    if stats.episodes:
        metrics["success_rate"] = stats.successes / stats.episodes
    if trainer.accelerator.is_main_process:
        policy.save(final_dir)
        run.log({"final": True, **metrics}, step=step)
    return GRPOResult(run, policy, final_dir, metrics)


def run_grpo_experiment(experiment: GRPOExperiment) -> GRPOResult:
    """``sftvrl grpo``: train the experiment's model with its GRPO arm."""
    return train_grpo(
        experiment.grpo, experiment.model, output=experiment.output, name=experiment.name
    )


__all__ = [
    "EPISODE_KEY",
    "EpisodeEnv",
    "EpisodeReward",
    "GRPOArmConfig",
    "GRPOExperiment",
    "GRPOResult",
    "StartState",
    "TokenResponder",
    "TokenResponse",
    "Trace",
    "build_prompt_dataset",
    "episode_return",
    "episodes_to_rollout",
    "grpo_args",
    "make_rollout_func",
    "run_grpo_experiment",
    "start_states",
    "train_grpo",
]
