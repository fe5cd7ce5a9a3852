"""A model as a rollout responder: one batched, KV-cached ``generate`` per round of turns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sftvrl.train.rollout import Request, Response


@dataclass(frozen=True)
class SamplingConfig:
    """How answers are sampled. ``temperature=0`` is greedy decoding."""

    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    micro_batch: int | None = None
    """Split a round into chunks of this many prompts (memory); None = all at once."""


class PolicyResponder:
    """Answers requests with a :class:`~sftvrl.models.Policy`; returns the token ids RL needs.

    Sampling is reproducible: call ``k`` of a responder seeded ``s`` draws from a torch generator
    state derived from ``(s, k)``, independent of anything else the process did.
    """

    def __init__(self, policy: Any, sampling: SamplingConfig | None = None, *, seed: int = 0):
        self.policy = policy
        self.sampling = sampling or SamplingConfig()
        self.seed = seed
        self.calls = 0
        self.generated_tokens = 0
        self.prompt_tokens = 0

    @torch.no_grad()
    def __call__(self, requests: Sequence[Request]) -> list[Response]:
        size = self.sampling.micro_batch or len(requests) or 1
        responses: list[Response] = []
        for start in range(0, len(requests), size):
            responses += self._generate(requests[start : start + size])
        self.calls += 1
        return responses

    def _generate(self, requests: Sequence[Request]) -> list[Response]:
        policy, sampling = self.policy, self.sampling
        conversations = [request.conversation for request in requests]
        images = [request.image for request in requests] if policy.vision else None
        inputs = policy.chat_inputs(conversations, images)
        tokenizer = policy.tokenizer
        greedy = sampling.temperature <= 0
        options: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": not greedy,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
        if not greedy:
            options |= {"temperature": sampling.temperature, "top_p": sampling.top_p}
        devices = [policy.device] if policy.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed * 1_000_003 + self.calls)
            output = policy.model.generate(**inputs, **options)
        prompt_length = inputs["input_ids"].shape[1]
        responses = []
        for row, mask in zip(output, inputs["attention_mask"], strict=True):
            completion = row[prompt_length:]
            ends = (completion == tokenizer.eos_token_id).nonzero()
            if len(ends):
                completion = completion[: int(ends[0]) + 1]
            completion = completion[completion != tokenizer.pad_token_id].cpu()
            prompt_ids = row[:prompt_length][mask.bool()].cpu()
            self.generated_tokens += len(completion)
            self.prompt_tokens += len(prompt_ids)
            text = tokenizer.decode(completion, skip_special_tokens=True)
            responses.append(Response(text, prompt_ids=prompt_ids, response_ids=completion))
        return responses
