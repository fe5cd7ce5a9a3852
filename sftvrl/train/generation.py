"""A model as a rollout responder: a whole round of turns is answered in batched, KV-cached passes.

Two engines answer a round:

- ``"cached"``: our own decoding loop. Each prompt reuses the keys and values its episode computed
  in the previous round (the conversation only grows: the last prompt and the model's answer are a
  prefix of the next prompt), and a new episode reuses the shared opening of the task prompt; only
  the rest is prefilled. Then one token per row per step is sampled into a preallocated cache,
  and finished rows leave the batch. Rows of very different lengths are decoded as separate
  batches, so a short prompt does not pay attention over a long one's padding. This avoids
  ``generate()``'s per-call set-up, its copy of the whole cache at every step (``DynamicCache``
  concatenates), and most of the prefill of a multi-turn episode.
- ``"generate"``: one Hugging Face ``generate`` per chunk of requests (any model it supports).

``"auto"`` (the default) takes ``"cached"`` for decoder-only text models and Llava-style VLMs whose
generation config asks for nothing beyond temperature / top-k / top-p sampling, and ``"generate"``
otherwise (Mllama's cross-attention, Qwen2-VL's 3-D positions, repetition penalties, ...).

Reusing a prefix is exact by construction: a row reuses cached keys and values only for its
longest common prefix of *token ids* with a sequence cached in the previous call (and only with the
same image object, for VLMs), so re-tokenisation quirks cost reuse, never correctness. The cache is
dropped when the model's weights change (any in-place update bumps a parameter's version), so an
RL step never decodes with keys computed by older weights.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from sftvrl.chat import text_of
from sftvrl.train.rollout import Request, Response

logger = logging.getLogger(__name__)

ENGINES = ("auto", "cached", "generate")
_CACHED_VISION_TYPES = ("llava",)
"""VLMs whose images are dense token runs in the sequence with one ``pixel_values`` row per image."""
_PREFILL_SPLIT = {"cpu": 512}
"""Padding tokens (rows x columns) that justify one more prefill forward, per device type."""
_DECODE_SPLIT = {"cpu": 16_384}
"""Padding columns (rows x columns) that justify decoding rows as a separate batch, per device
type: on CPU one more forward per step costs about what attention over that much padding does."""
_DEFAULT_SPLIT = 1 << 20
"""Elsewhere (GPUs) padding is cheap next to a forward's launch overhead."""
_GENERATE_TOP_K = 50
"""``generate()`` samples among the 50 likeliest tokens unless a generation config says otherwise."""
_SHARED_CANDIDATES = 4
"""Sequences of the previous call a new episode compares its prompt with (shared task prompt)."""
_NEUTRAL_GENERATION_OPTIONS: dict[str, tuple[Any, ...]] = {
    "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "encoder_no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "typical_p": (None, 1.0),
    "min_p": (None, 0.0),
    "epsilon_cutoff": (None, 0.0),
    "eta_cutoff": (None, 0.0),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "sequence_bias": (None,),
    "guidance_scale": (None, 1.0),
    "exponential_decay_length_penalty": (None,),
    "watermarking_config": (None,),
}
"""Options of a model's ``generation_config`` that ``generate()`` would apply and our loop does not."""


@dataclass(frozen=True)
class SamplingConfig:
    """How answers are sampled. ``temperature=0`` is greedy decoding."""

    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    micro_batch: int | None = None
    """Split a round into chunks of at most this many prompts (memory); None = all at once. With
    ``reuse_prefix`` the cached engine also keeps the previous round's keys/values, about one
    round's cache whatever the chunk size; turn reuse off to bound memory by one chunk."""
    engine: str = "auto"
    """``"cached"`` (our KV-cached loop), ``"generate"`` (HF ``generate``) or ``"auto"``."""
    reuse_prefix: bool = True
    """Cached engine: reuse keys/values computed in the previous call (see the module)."""
    top_k: int | None = None
    """Sample among the ``top_k`` likeliest tokens; 0 = all. None = the model's generation
    config, else ``generate()``'s default of 50 (what the official code gets)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.micro_batch is not None and self.micro_batch < 1:
            raise ValueError(f"micro_batch must be None or at least 1, got {self.micro_batch}")
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; use one of {ENGINES}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"top_k must be None, 0 (no limit) or positive, got {self.top_k}")


@dataclass
class _Prefix:
    """Tokens of one row of a finished call whose keys/values can start a later prompt."""

    ids: torch.Tensor
    """CPU token ids whose keys/values are held (prompt + answer, less the last sampled token)."""
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    """Per layer, this row's ``[heads, capacity, head_dim]`` key and value buffers (views)."""
    first: int
    """The buffer column of ``ids[0]``; the ids' keys/values are contiguous from there."""
    image: Any
    """The request's image; held so that the identity check on it stays meaningful."""


@dataclass
class _Store:
    """The previous call's sequences: by episode (first message and image) and a few recent ones."""

    by_key: dict[tuple[str, int], list[_Prefix]] = field(default_factory=dict)
    recent: list[_Prefix] = field(default_factory=list)

    def add(self, key: tuple[str, int], prefix: _Prefix) -> None:
        self.by_key.setdefault(key, []).append(prefix)
        if len(self.recent) < _SHARED_CANDIDATES:
            self.recent.append(prefix)


@dataclass
class _Row:
    """One request of a call: its tokens and the cached prefix it starts from."""

    index: int
    request: Request
    prompt: torch.Tensor
    key: tuple[str, int]
    image_tokens: torch.Tensor | None = None
    """Positions of image tokens in the prompt (VLMs)."""
    reuse: int = 0
    source: _Prefix | None = None

    @property
    def suffix(self) -> int:
        """Tokens to prefill."""
        return len(self.prompt) - self.reuse


class _RoundKV:
    """Keys/values of one decoding batch: per layer a ``[rows, heads, capacity, head_dim]`` buffer.

    Rows are right-aligned: row ``j``'s prompt fills the columns ``first[j]:width`` and generated
    tokens follow from ``width`` on, so no row has holes and every reused prefix is one contiguous
    slice. Buffers are allocated at a layer's first update, where the head count and size become
    known, and the reused prefixes are copied in then.
    """

    def __init__(self, rows: list[_Row], width: int, capacity: int) -> None:
        self.rows = len(rows)
        self.width = width
        self.capacity = capacity
        self.first = [width - len(row.prompt) for row in rows]
        self.copies = [
            (j, row.source, row.reuse)
            for j, row in enumerate(rows)
            if row.source is not None and row.reuse > 0
        ]
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def buffers(
        self, index: int, key_states: torch.Tensor, value_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if index < len(self.keys):
            return self.keys[index], self.values[index]
        if index != len(self.keys):
            raise RuntimeError(f"cache layer {index} updated before layer {len(self.keys)}")
        _, heads, _, dim = key_states.shape
        shape = (self.rows, heads, self.capacity, dim)
        keys = torch.empty(shape, dtype=key_states.dtype, device=key_states.device)
        values = torch.empty(shape, dtype=value_states.dtype, device=value_states.device)
        keys[:, :, : self.width].zero_()  # left padding: masked, but must be finite
        values[:, :, : self.width].zero_()
        for j, source, n in self.copies:
            source_keys, source_values = source.kv[index]
            first, origin = self.first[j], source.first
            keys[j, :, first : first + n] = source_keys[:, origin : origin + n]
            values[j, :, first : first + n] = source_values[:, origin : origin + n]
        self.keys.append(keys)
        self.values.append(values)
        return keys, values

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Drop finished rows (copies the survivors; views held by ``_Prefix`` stay valid)."""
        self.keys = [keys.index_select(0, rows) for keys in self.keys]
        self.values = [values.index_select(0, rows) for values in self.values]
        self.rows = len(rows)

    def row_views(self, row: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [
            (keys[row], values[row]) for keys, values in zip(self.keys, self.values, strict=True)
        ]


class _BufferLayer(DynamicLayer):
    """One layer's cache for a forward over ``rows`` of a :class:`_RoundKV`, written in place.

    ``DynamicLayer`` concatenates at every step, copying the whole cache; here new columns are
    written into the preallocated buffer and views are returned. ``offset`` hides the leading
    columns no row of this forward uses. ``write`` (prefill) marks which new columns are real
    tokens of each row; the others keep what the buffer holds (a reused prefix or zero
    padding), so their queries may be anything.
    """

    def __init__(
        self,
        kv: _RoundKV,
        index: int,
        rows: slice,
        length: int,
        offset: int = 0,
        write: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.kv = kv
        self.index = index
        self.rows = rows
        self.length = length
        self.offset = offset
        self.write = write
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.kv.buffers(self.index, key_states, value_states)
        keys, values = keys[self.rows], values[self.rows]
        end = self.length + key_states.shape[-2]
        if end > self.kv.capacity:
            raise RuntimeError(f"KV buffer overflow: {end} > {self.kv.capacity} columns")
        new_keys, new_values = keys[:, :, self.length : end], values[:, :, self.length : end]
        if self.write is None:
            new_keys.copy_(key_states)
            new_values.copy_(value_states)
        else:
            new_keys.copy_(torch.where(self.write, key_states, new_keys))
            new_values.copy_(torch.where(self.write, value_states, new_values))
        self.length = end
        self.keys = keys[:, :, self.offset : end]
        self.values = values[:, :, self.offset : end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length - self.offset

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length - self.offset + query_length, 0


class PolicyResponder:
    """Answers requests with a :class:`~sftvrl.models.Policy`; returns the token ids RL needs.

    Sampling is reproducible: call ``k`` of a responder seeded ``s`` draws from a torch generator
    state derived from ``(s, k)``, independent of anything else the process did. The same seed,
    the same sequence of calls (same requests in the same order, same ``micro_batch``), device
    and thread count give the same texts. A different batch (another pool size, other requests
    alongside) gives each row other random numbers, hence different, equally distributed samples;
    greedy decoding does not depend on the batch, up to floating-point rounding.
    """

    def __init__(self, policy: Any, sampling: SamplingConfig | None = None, *, seed: int = 0):
        self.policy = policy
        self.sampling = sampling or SamplingConfig()
        self.seed = seed
        self.calls = 0
        self.generated_tokens = 0
        self.prompt_tokens = 0
        self.reused_tokens = 0
        """Prompt tokens whose keys/values came from the previous call instead of a prefill."""
        self._engine: str | None = None
        self._cache_argument = "cache"
        self._logits_to_keep = False
        self._layer_count = 0
        self._image_token: int | None = None
        self._store = _Store()
        self._weights_version: tuple[int, ...] | None = None

    @property
    def engine(self) -> str:
        """The engine in use (``"cached"`` or ``"generate"``), resolved on first use."""
        if self._engine is None:
            self._engine = self._resolve_engine()
        return self._engine

    def reset(self) -> None:
        """Forget the cached prefixes (they are dropped by themselves when the weights change)."""
        self._store = _Store()

    @torch.no_grad()
    def __call__(self, requests: Sequence[Request]) -> list[Response]:
        responses: list[Response] = []
        if self.engine == "generate":
            size = self.sampling.micro_batch or len(requests) or 1
            for start in range(0, len(requests), size):
                responses += self._generate(requests[start : start + size])
        elif requests:
            previous = self._previous_store()
            generator = torch.Generator(device=self.policy.device)
            generator.manual_seed(self.seed * 1_000_003 + self.calls)
            stored = _Store()
            responses = self._decode(requests, previous, stored, generator)
            self._store = stored if self.sampling.reuse_prefix else _Store()
        self.calls += 1
        return responses

    # -- engine choice -----------------------------------------------------------------------

    def _resolve_engine(self) -> str:
        wanted = self.sampling.engine
        if wanted == "generate":
            return "generate"
        reason = self._cached_unsupported()
        if reason is None:
            return "cached"
        if wanted == "cached":
            raise ValueError(
                f"engine='cached' cannot run this model: {reason}; use engine='generate' or 'auto'"
            )
        logger.info("using generate() instead of the cached engine: %s", reason)
        return "generate"

    def _cached_unsupported(self) -> str | None:
        """Why our decoding loop cannot stand in for ``generate()`` here, or None if it can."""
        model = _base_model(self.policy.model)
        config = model.config
        model_type = getattr(config, "model_type", "")
        if getattr(config, "is_encoder_decoder", False):
            return f"{model_type} is an encoder-decoder model"
        if self.policy.vision and model_type not in _CACHED_VISION_TYPES:
            return f"the {model_type!r} VLM is not one of {_CACHED_VISION_TYPES}"
        parameters = inspect.signature(model.forward).parameters
        if "position_ids" not in parameters:
            return f"{type(model).__name__}.forward takes no position_ids"
        if "cache" in parameters:
            self._cache_argument = "cache"
        elif "past_key_values" in parameters:
            self._cache_argument = "past_key_values"
        else:
            return f"{type(model).__name__}.forward takes no cache"
        self._logits_to_keep = "logits_to_keep" in parameters
        layers = DynamicCache(config=config).layers
        if not layers or any(type(layer) is not DynamicLayer for layer in layers):
            return "its cache is not plain full attention (sliding windows or linear layers)"
        self._layer_count = len(layers)
        if self.policy.vision:
            self._image_token = getattr(config, "image_token_id", None)
            if self._image_token is None:
                return f"the {model_type!r} config names no image_token_id"
        generation = getattr(model, "generation_config", None)
        for name, neutral in _NEUTRAL_GENERATION_OPTIONS.items():
            value = getattr(generation, name, None)
            if value not in neutral:
                return f"its generation_config sets {name}={value!r}"
        return None

    def _previous_store(self) -> _Store:
        """Last call's sequences, or none if the weights changed since (e.g. an RL update)."""
        version = tuple(
            value
            for parameter in self.policy.model.parameters()
            for value in (id(parameter), parameter._version)
        )
        if version != self._weights_version:
            self._store = _Store()
            self._weights_version = version
        return self._store if self.sampling.reuse_prefix else _Store()

    # -- the cached engine -----------------------------------------------------------------------

    def _decode(
        self,
        requests: Sequence[Request],
        previous: _Store,
        stored: _Store,
        generator: torch.Generator,
    ) -> list[Response]:
        """Tokenise the round, find reusable prefixes, and decode it in batches of like lengths."""
        policy = self.policy
        images = [request.image for request in requests] if policy.vision else None
        inputs = policy.chat_inputs([request.conversation for request in requests], images)
        padded = inputs["input_ids"].cpu()
        present = inputs["attention_mask"].cpu().bool()
        rows = []
        for i, (request, ids, mask) in enumerate(zip(requests, padded, present, strict=True)):
            prompt = ids[mask]
            image_tokens = None
            if self._image_token is not None:
                image_tokens = (prompt == self._image_token).nonzero().squeeze(1)
            rows.append(_Row(i, request, prompt, _prefix_key(request), image_tokens))
        for row in rows:
            self._find_reuse(row, previous)
        pixel_values = inputs.get("pixel_values")
        rows.sort(key=lambda row: -len(row.prompt))
        limit = self.sampling.micro_batch or len(rows)
        split = _DECODE_SPLIT.get(policy.device.type, _DEFAULT_SPLIT)
        responses: list[Response | None] = [None] * len(requests)
        for start, stop in _groups([len(row.prompt) for row in rows], split, limit):
            for row, response in self._decode_rows(
                rows[start:stop], pixel_values, stored, generator
            ):
                responses[row.index] = response
        return [response for response in responses if response is not None]

    def _find_reuse(self, row: _Row, previous: _Store) -> None:
        """The longest token prefix of the row's prompt whose keys/values the last call holds:
        its episode's previous turn, else (a new episode) a shared opening of the task prompt."""
        candidates = previous.by_key.get(row.key) or previous.recent
        for prefix in candidates:
            if prefix.image is not row.request.image:
                continue
            n = min(_common_prefix(prefix.ids, row.prompt), len(row.prompt) - 1)
            if n > row.reuse:
                row.reuse, row.source = n, prefix
        tokens = row.image_tokens
        if tokens is not None and len(tokens) and row.reuse <= int(tokens[-1]):
            row.reuse, row.source = 0, None  # the prefix cuts an image: recompute it whole

    def _decode_rows(
        self,
        rows: list[_Row],
        pixel_values: torch.Tensor | None,
        stored: _Store,
        generator: torch.Generator,
    ) -> list[tuple[_Row, Response]]:
        """Prefill and decode one batch of rows; store their keys/values for the next call."""
        policy, sampling = self.policy, self.sampling
        tokenizer, device = policy.tokenizer, policy.device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else -1  # -1: none
        rows = sorted(rows, key=lambda row: -row.suffix)  # prefill groups: contiguous rows
        batch = len(rows)
        width = max(len(row.prompt) for row in rows)
        kv = _RoundKV(rows, width, width + sampling.max_new_tokens)
        mask = torch.zeros((batch, kv.capacity), dtype=torch.bool)
        for j, first in enumerate(kv.first):
            mask[j, first:width] = True
        mask = mask.to(device)

        logits = []
        split = _PREFILL_SPLIT.get(device.type, _DEFAULT_SPLIT)
        for start, stop in _groups([row.suffix for row in rows], split, batch):
            new = rows[start].suffix
            input_ids = torch.full((stop - start, new), pad, dtype=torch.long)
            positions = torch.zeros((stop - start, new), dtype=torch.long)
            write = torch.zeros((stop - start, 1, new, 1), dtype=torch.bool)
            images = []
            for j, row in enumerate(rows[start:stop]):
                input_ids[j, new - row.suffix :] = row.prompt[row.reuse :]
                positions[j, new - row.suffix :] = torch.arange(row.reuse, len(row.prompt))
                write[j, :, new - row.suffix :] = True
                if row.image_tokens is not None and len(row.image_tokens) and row.reuse == 0:
                    images.append(row.index)  # its image tokens are prefilled: pass the image
            offset = min(kv.first[start:stop])
            layers = [
                _BufferLayer(kv, index, slice(start, stop), width - new, offset, write.to(device))
                for index in range(self._layer_count)
            ]
            extra = {}
            if images and pixel_values is not None:
                extra["pixel_values"] = pixel_values[images]
            logits.append(
                self._forward(
                    input_ids.to(device),
                    mask[start:stop, offset:width],
                    positions.to(device),
                    Cache(layers=list(layers)),
                    extra,
                )
            )
        next_logits = torch.cat(logits)

        tokens = torch.full((batch, sampling.max_new_tokens), pad, dtype=torch.long, device=device)
        lengths = torch.zeros(batch, dtype=torch.long, device=device)
        forwarded = torch.zeros(batch, dtype=torch.long, device=device)
        live = torch.arange(batch, device=device)  # the row of each row still in the batch
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        position = torch.tensor([len(row.prompt) for row in rows], device=device)
        views: list[list[tuple[torch.Tensor, torch.Tensor]] | None] = [None] * batch
        cache = Cache(
            layers=[
                _BufferLayer(kv, index, slice(None), width) for index in range(self._layer_count)
            ]
        )
        top_k = _top_k(policy.model, sampling)
        banned = _banned_tokens(policy)
        for step in range(sampling.max_new_tokens):
            if banned:
                next_logits[:, banned] = float("-inf")
            chosen = _sample(next_logits, sampling.temperature, top_k, sampling.top_p, generator)
            chosen = torch.where(done, pad, chosen)
            tokens[live, step] = chosen
            lengths[live] += (~done).long()
            done = done | (chosen == eos)
            finished = int(done.sum())
            if step == sampling.max_new_tokens - 1 or finished == len(live):
                break
            if finished * 2 >= len(live) >= 8:  # drop finished rows from the batch
                for local in done.nonzero().squeeze(1).tolist():
                    views[int(live[local])] = kv.row_views(local)
                keep = (~done).nonzero().squeeze(1)
                kv.keep_rows(keep)
                live, chosen, position = live[keep], chosen[keep], position[keep]
                mask, done = mask.index_select(0, keep), done[keep]
            column = width + step
            mask[:, column] = True
            next_logits = self._forward(
                chosen[:, None], mask[:, : column + 1], position[:, None], cache, {}
            )
            forwarded[live] += (~done).long()
            position = position + 1
        for local, j in enumerate(live.tolist()):
            views[j] = kv.row_views(local)

        tokens_cpu = tokens.cpu()
        lengths_list, forwarded_list = lengths.tolist(), forwarded.tolist()
        answers = []
        for j, row in enumerate(rows):
            completion = tokens_cpu[j, : lengths_list[j]].clone()
            self.generated_tokens += len(completion)
            self.prompt_tokens += len(row.prompt)
            self.reused_tokens += row.reuse
            text = tokenizer.decode(completion, skip_special_tokens=True)
            answers.append((row, Response(text, prompt_ids=row.prompt, response_ids=completion)))
            row_views = views[j]
            if sampling.reuse_prefix and row_views is not None:
                held = min(forwarded_list[j], lengths_list[j])
                ids = torch.cat([row.prompt, completion[:held]])
                stored.add(row.key, _Prefix(ids, row_views, kv.first[j], row.request.image))
        return answers

    def _forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Cache,
        extra: dict[str, Any],
    ) -> torch.Tensor:
        """Next-token logits (float32) of the last column, writing keys/values into ``cache``."""
        model = _base_model(self.policy.model)
        options: dict[str, Any] = {self._cache_argument: cache, "use_cache": True, **extra}
        if self._logits_to_keep:
            options["logits_to_keep"] = 1
        output = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            **options,
        )
        return output.logits[:, -1].float()

    # -- the generate() engine -------------------------------------------------------------------

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
            if sampling.top_k is not None:
                options["top_k"] = sampling.top_k
        banned = _banned_tokens(policy)
        if banned:
            options["suppress_tokens"] = banned
        devices = [policy.device] if policy.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed * 1_000_003 + self.calls)
            output = policy.model.generate(**inputs, **options)
        prompt_length = inputs["input_ids"].shape[1]
        responses = []
        for row, mask in zip(output, inputs["attention_mask"], strict=True):
            completion = row[prompt_length:]
            ends = (completion == tokenizer.eos_token_id).nonzero()
            if len(ends):  # only an eos is followed by padding
                completion = completion[: int(ends[0]) + 1]
            completion = completion.cpu()
            prompt_ids = row[:prompt_length][mask.bool()].cpu()
            self.generated_tokens += len(completion)
            self.prompt_tokens += len(prompt_ids)
            text = tokenizer.decode(completion, skip_special_tokens=True)
            responses.append(Response(text, prompt_ids=prompt_ids, response_ids=completion))
        return responses


def _banned_tokens(policy: Any) -> list[int]:
    """Tokens a VLM must never generate: its image placeholder. A sampled ``<image>`` in an
    answer would ask the next forward pass (the next turn, or RL scoring the answer) for one image
    more than it is given, which the model refuses."""
    if not policy.vision:
        return []
    config = getattr(_base_model(policy.model), "config", None)
    token = getattr(config, "image_token_id", None)
    if token is None:
        token = getattr(config, "image_token_index", None)
    return [] if token is None else [int(token)]


def _base_model(model: Any) -> Any:
    """The transformers model under DDP and peft wrappers (LoRA layers live inside it)."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def _prefix_key(request: Request) -> tuple[str, int]:
    """An episode's cached prefix is looked up by its first message and its image."""
    first = text_of(request.conversation[0]) if request.conversation else ""
    return first, id(request.image)


def _groups(sizes: Sequence[int], split: int, limit: int) -> list[tuple[int, int]]:
    """Contiguous ranges of a descending ``sizes`` to run as one batch each.

    A new range starts where the items still to come would save more than ``split`` padding
    (items x size difference) by not being padded to the current range's first size, or where
    the range holds ``limit`` items.
    """
    groups, start = [], 0
    for item in range(1, len(sizes)):
        saving = (len(sizes) - item) * (sizes[start] - sizes[item])
        if saving > split or item - start >= limit:
            groups.append((start, item))
            start = item
    groups.append((start, len(sizes)))
    return groups


def _common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    different = (a[:n] != b[:n]).nonzero()
    return int(different[0]) if len(different) else n


def _top_k(model: Any, sampling: SamplingConfig) -> int:
    """The top-k ``generate()`` would sample with: ours, the model's, or its default (0 = none)."""
    if sampling.top_k is not None:
        return sampling.top_k
    top_k = getattr(getattr(_base_model(model), "generation_config", None), "top_k", None)
    return _GENERATE_TOP_K if top_k is None else int(top_k)


def _sample(
    logits: torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """One token per row, as ``generate()``'s temperature, top-k and top-p warpers would draw it.

    Draws by inverting the cumulative distribution with one uniform number per row, which is
    much cheaper on CPU than ``torch.multinomial``.
    """
    if temperature <= 0:
        return logits.argmax(dim=-1)
    scores = logits / temperature
    if 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(scores, descending=False)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= 1 - top_p
        remove[:, -1] = False
        scores = scores.masked_fill(remove.scatter(1, order, remove), float("-inf"))
    probabilities = scores.softmax(dim=-1)
    cdf = probabilities.cumsum(dim=-1)
    uniform = torch.rand((len(cdf), 1), generator=generator, device=cdf.device, dtype=cdf.dtype)
    chosen = torch.searchsorted(cdf, uniform * cdf[:, -1:], right=True).squeeze(1)
    # rounding can land on the total: take the last token with any probability instead
    last = probabilities.shape[-1] - 1 - (probabilities.flip(-1) > 0).int().argmax(dim=-1)
    return torch.minimum(chosen, last)
