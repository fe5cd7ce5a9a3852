"""FLOPs accounting: the x-axis of every curve in the paper (PAPER.md §3.5, paper App. C.3).

The paper counts compute the Kaplan/Chinchilla way, with N the parameter count and D a token count:

- training (forward + backward) costs ``6·N·D`` and inference (a forward pass) ``2·N·D``;
- ``X_SFT = 6N(D_init + D_SFT)`` and ``X_RL = 6N(D_init + D_RL) + 2N·D_buffer`` with
  ``D_buffer ≈ λ·D_RL``, λ = 6 for GeneralPoints and 5.1 for V-IRL; both branches include the
  tokens ``D_init`` that made the shared Init checkpoint, so curves start at the Init point.

The official code's counter (``token_cnt``, logged as ``compute_tokens``) adds the prompt length per
generation call and ``6·(prompt + response)`` per PPO forward/backward, plus ``6·1600`` when pixel
values are present ("Llama 3.2 has 1601 visual tokens"); multiplying by N gives FLOPs.

Choices made here (the spec leaves them open, §8.3), in one place:

1. **Tokens are the positions a pass processes**: prompt and answer tokens (not only the loss
   tokens), padding excluded. A vision-language model's image counts as the number of vision tokens
   it feeds the language model: already inside ``input_ids`` for LLaVA/Qwen-style models (count
   nothing extra), ``MLLAMA_VISION_TOKENS`` = 1600 per sample with pixel values for
   Llama-3.2-Vision, as the official code does. The same rule is applied to SFT (the code has no
   SFT counter).
2. **PPO epochs multiply D_RL**: every forward/backward over the buffer is counted, so 4 epochs
   over a buffer cost 4× (``ppo_update_flops``), following the official counter, which adds
   tokens at every ``evaluate_actions`` call. The tracker also keeps the buffer counted once, so a
   figure can be redrawn under the other reading (``ComputeTracker.ppo_epochs_multiply``).
3. **Three conventions** for a whole run, all from the same raw counts:

   - ``"measured"`` (default): ``6N(D_init + D_SFT + D_RL) + 2N·D_inference``, with
     ``D_inference`` the tokens actually processed by generation (prompt, vision and generated
     tokens: with a KV cache each costs one forward) and by no-grad scoring passes;
   - ``"paper"``: ``6N(D_init + D_SFT + D_RL) + 2N·λ·D_RL`` (App. C.3; λ from the task);
   - ``"code"``: ``N·(6(D_init + D_SFT + D_RL) + D_prompt)``, the official ``token_cnt`` × N
     (generation counts the text prompt once, no vision or answer tokens; scoring passes are free).

4. **N** is every parameter the forward pass multiplies by, frozen or not (base model plus LoRA
   adapters plus value head), with 4-bit weights counted unpacked (``count_parameters``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from sftvrl.config import _write_text_atomic

__all__ = [
    "GFLOP",
    "MLLAMA_VISION_TOKENS",
    "PAPER_BUFFER_LAMBDA",
    "PAPER_N_PARAMS",
    "ComputeTracker",
    "Convention",
    "count_parameters",
    "count_tokens",
    "generation_flops",
    "paper_buffer_lambda",
    "paper_rl_flops",
    "ppo_update_flops",
    "sft_flops",
    "training_flops",
]

GFLOP = 1e9
"""FLOPs per GFLOP: the plots' x-axes are in GFLOPs."""

MLLAMA_VISION_TOKENS = 1600
"""Vision tokens the official code adds per sample with pixel values (Llama-3.2-Vision)."""

PAPER_N_PARAMS = 10_700_000_000
"""N of the paper's backbone as its Init checkpoints are listed ("10.7B params"); the paper does
not say whether it used 10.7B or 11B (§8.3)."""

PAPER_BUFFER_LAMBDA = {"gp": 6.0, "virl": 5.1}
"""The paper's D_buffer / D_RL ratio λ per task family (App. C.3)."""

Convention = Literal["measured", "paper", "code"]
_CONVENTIONS = ("measured", "paper", "code")


def _check_count(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite, non-negative number, got {value!r}")


def training_flops(n_params: int, n_tokens: float) -> float:
    """Forward + backward over ``n_tokens`` tokens: ``6·N·D``."""
    _check_count("n_params", n_params)
    _check_count("n_tokens", n_tokens)
    return float(6 * n_params * n_tokens)


def generation_flops(n_params: int, n_tokens: float) -> float:
    """A forward pass over ``n_tokens`` tokens (generation or scoring): ``2·N·D``."""
    _check_count("n_params", n_params)
    _check_count("n_tokens", n_tokens)
    return float(2 * n_params * n_tokens)


def sft_flops(n_params: int, n_tokens: float, *, init_tokens: float = 0) -> float:
    """The paper's ``X_SFT = 6N(D_init + D_SFT)``; ``init_tokens=0`` gives the SFT alone."""
    _check_count("init_tokens", init_tokens)
    return training_flops(n_params, init_tokens + n_tokens)


def ppo_update_flops(n_params: int, buffer_tokens: float, *, epochs: int = 4) -> float:
    """Training cost of one PPO update: ``6·N·epochs·D_buffer``.

    ``buffer_tokens`` are the tokens of every transition in the buffer (prompt + response +
    vision), counted once; each of the ``epochs`` passes over the buffer is a forward/backward.
    The official default is 4 epochs.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    return training_flops(n_params, epochs * buffer_tokens)


def paper_buffer_lambda(task: str) -> float:
    """λ of the paper's ``D_buffer ≈ λ·D_RL`` for a task name (``gp-l``, ``virl-vl``, ...)."""
    name = task.lower().replace("_", "").replace("-", "")
    if name.startswith(("gp", "generalpoints")):
        family = "gp"
    elif name.startswith("virl"):
        family = "virl"
    else:
        raise ValueError(
            f"no λ for task {task!r}: the paper gives λ for GeneralPoints (gp-*: 6) and V-IRL "
            "(virl-*: 5.1); pass buffer_lambda explicitly for another task"
        )
    return PAPER_BUFFER_LAMBDA[family]


def paper_rl_flops(
    n_params: int, rl_tokens: float, *, buffer_lambda: float, init_tokens: float = 0
) -> float:
    """The paper's ``X_RL = 6N(D_init + D_RL) + 2N·λ·D_RL`` (App. C.3)."""
    _check_count("buffer_lambda", buffer_lambda)
    _check_count("init_tokens", init_tokens)
    return training_flops(n_params, init_tokens + rl_tokens) + generation_flops(
        n_params, buffer_lambda * rl_tokens
    )


def count_tokens(attention_mask: Any, *, images: int = 0, vision_tokens_per_image: int = 0) -> int:
    """Tokens a batch costs: the real (unmasked) positions plus vision tokens not in the mask.

    ``attention_mask`` is a tensor, array or nested list of 0/1 (padding is 0). For
    Llama-3.2-Vision pass ``images`` = samples with pixel values and
    ``vision_tokens_per_image=MLLAMA_VISION_TOKENS``; for models whose image tokens are part of
    ``input_ids`` leave both at 0.
    """
    _check_count("images", images)
    _check_count("vision_tokens_per_image", vision_tokens_per_image)
    if hasattr(attention_mask, "sum") and callable(attention_mask.sum):
        real = attention_mask.sum()
        real = real.item() if hasattr(real, "item") else real
    else:
        real = sum(_flat_sum(row) for row in attention_mask)
    return int(real) + int(images) * int(vision_tokens_per_image)


def _flat_sum(row: Any) -> int:
    if isinstance(row, int | float):
        return int(row)
    return sum(_flat_sum(x) for x in row)


def _param_count(param: Any) -> int:
    """Elements of a parameter, unpacking bitsandbytes 4-bit storage (two values per byte)."""
    quant_state = getattr(param, "quant_state", None)
    shape = getattr(quant_state, "shape", None)
    if shape is not None:
        return math.prod(int(s) for s in shape)
    if type(param).__name__ == "Params4bit":  # not quantized yet, or no quant_state: packed bytes
        itemsize = getattr(getattr(param, "quant_storage", None), "itemsize", 1)
        if param.dtype.is_floating_point:  # still unquantized: numel is the real count
            return param.numel()
        return param.numel() * 2 * itemsize
    return param.numel()


def count_parameters(model: Any, *, trainable_only: bool = False) -> int:
    """N for the FLOPs formulas: every parameter the forward pass uses, each shared one once.

    Works on plain torch modules and peft models: LoRA-wrapped models count the frozen base
    weights plus the adapters; 4-bit (bitsandbytes) weights count as the unpacked matrix; the
    frozen ``original_module`` copies peft keeps beside ``modules_to_save`` are skipped (the
    forward pass uses the trainable copy). ``trainable_only`` counts parameters with
    ``requires_grad`` (what the optimizer updates).
    """
    seen: set[int] = set()
    total = 0
    for name, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        if ".original_module." in f".{name}":
            continue
        if trainable_only and not param.requires_grad:
            continue
        total += _param_count(param)
    return total


@dataclass
class ComputeTracker:
    """Token counts of a run (and of the Init it started from), and their FLOPs.

    Call the ``add_*`` methods as work is done, log :meth:`metrics` with every metric line, and
    save :meth:`state_dict` in each checkpoint so a resumed run continues the count exactly.
    For a branch that starts from Init, pass ``init_tokens=init_tracker.train_tokens``.
    """

    n_params: int
    convention: Convention = "measured"
    buffer_lambda: float | None = None
    """λ for the ``"paper"`` convention (see :func:`paper_buffer_lambda`)."""
    ppo_epochs_multiply: bool = True
    """Whether D_RL counts every PPO epoch (choice 2 of the module docstring)."""
    init_tokens: int = 0
    sft_tokens: int = 0
    rl_tokens: int = 0
    rl_buffer_tokens: int = 0
    generation_prompt_tokens: int = 0
    generation_vision_tokens: int = 0
    generation_output_tokens: int = 0
    forward_tokens: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.n_params, bool) or not isinstance(self.n_params, int):
            raise TypeError(f"n_params must be an int, got {type(self.n_params).__name__}")
        if self.n_params <= 0:
            raise ValueError(f"n_params must be positive, got {self.n_params}")
        if self.convention not in _CONVENTIONS:
            raise ValueError(
                f"unknown FLOPs convention {self.convention!r}; expected one of {_CONVENTIONS}"
            )
        if self.buffer_lambda is not None:
            _check_count("buffer_lambda", self.buffer_lambda)
        for name in _COUNTERS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")

    @classmethod
    def for_task(
        cls, n_params: int, task: str, convention: Convention = "measured", **counts: Any
    ) -> ComputeTracker:
        """A tracker with the paper's λ for ``task`` (so the ``"paper"`` convention works)."""
        return cls(n_params, convention, paper_buffer_lambda(task), **counts)

    # ---- counting

    @staticmethod
    def _tokens(name: str, value: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        return value

    def add_sft(self, tokens: int) -> None:
        """Tokens of one SFT step (every sequence's prompt + answer, vision included)."""
        self.sft_tokens += self._tokens("tokens", tokens)

    def add_ppo_update(self, buffer_tokens: int, epochs: int) -> None:
        """One PPO update: ``epochs`` forward/backward passes over a buffer of ``buffer_tokens``."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive int, got {epochs!r}")
        buffer_tokens = self._tokens("buffer_tokens", buffer_tokens)
        self.rl_tokens += epochs * buffer_tokens
        self.rl_buffer_tokens += buffer_tokens

    def add_generation(
        self, prompt_tokens: int, output_tokens: int, vision_tokens: int = 0
    ) -> None:
        """One generation call (or a batch): prompt tokens prefilled, tokens generated, and the
        vision tokens of the prompt when they are not part of ``prompt_tokens``."""
        self.generation_prompt_tokens += self._tokens("prompt_tokens", prompt_tokens)
        self.generation_output_tokens += self._tokens("output_tokens", output_tokens)
        self.generation_vision_tokens += self._tokens("vision_tokens", vision_tokens)

    def add_forward(self, tokens: int) -> None:
        """A no-grad scoring pass (old log-probs, values) over ``tokens`` tokens."""
        self.forward_tokens += self._tokens("tokens", tokens)

    def merge(self, other: ComputeTracker) -> None:
        """Add another tracker's counts (e.g. from another process) to this one."""
        if other.n_params != self.n_params:
            raise ValueError(
                f"cannot merge counts of models with N={other.n_params} and N={self.n_params}"
            )
        for name in _COUNTERS:
            if name != "init_tokens":
                setattr(self, name, getattr(self, name) + getattr(other, name))

    # ---- totals

    @property
    def train_tokens(self) -> int:
        """Tokens through forward/backward passes, Init included: the next stage's D_init."""
        return self.init_tokens + self.sft_tokens + self.rl_tokens

    @property
    def inference_tokens(self) -> int:
        """Tokens through forward-only passes (generation and scoring)."""
        return (
            self.generation_prompt_tokens
            + self.generation_vision_tokens
            + self.generation_output_tokens
            + self.forward_tokens
        )

    def flops(self, convention: Convention | None = None) -> float:
        """Total FLOPs so far under ``convention`` (default: the tracker's own)."""
        return sum(self.breakdown(convention).values())

    def breakdown(self, convention: Convention | None = None) -> dict[str, float]:
        """FLOPs split into ``train`` (6N·D) and ``inference`` (generation and scoring)."""
        convention = convention or self.convention
        n = self.n_params
        d_rl = self.rl_tokens if self.ppo_epochs_multiply else self.rl_buffer_tokens
        d_train = self.init_tokens + self.sft_tokens + d_rl
        if convention == "measured":
            inference = generation_flops(n, self.inference_tokens)
        elif convention == "paper":
            if d_rl and self.buffer_lambda is None:
                raise ValueError(
                    "the 'paper' convention needs buffer_lambda (λ of D_buffer = λ·D_RL): use "
                    "ComputeTracker.for_task(...) or set buffer_lambda"
                )
            inference = generation_flops(n, (self.buffer_lambda or 0.0) * d_rl)
        elif convention == "code":
            # token_cnt += prompt length per generation call, i.e. N·D_prompt FLOPs
            inference = float(n * self.generation_prompt_tokens)
        else:
            raise ValueError(f"unknown convention {convention!r}; expected one of {_CONVENTIONS}")
        return {"train": training_flops(n, d_train), "inference": inference}

    @property
    def gflops(self) -> float:
        """Total GFLOPs under the tracker's convention: the paper's x-axis unit."""
        return self.flops() / GFLOP

    def metrics(self) -> dict[str, float | int]:
        """What to log with every metric line: GFLOPs (total and split) and the token counts."""
        parts = self.breakdown()
        return {
            "gflops": (parts["train"] + parts["inference"]) / GFLOP,
            "gflops_train": parts["train"] / GFLOP,
            "gflops_inference": parts["inference"] / GFLOP,
            "tokens_train": self.train_tokens,
            "tokens_inference": self.inference_tokens,
        }

    # ---- persistence

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue counting after a resume (JSON-serialisable)."""
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore counts saved by :meth:`state_dict`; N and the convention must match."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(state) - known)
        if unknown:
            raise ValueError(
                f"unknown ComputeTracker state keys {unknown}; expected {sorted(known)}"
            )
        if state.get("n_params", self.n_params) != self.n_params:
            raise ValueError(
                f"the saved counts are for a model with N={state['n_params']} parameters, this "
                f"tracker has N={self.n_params}; resume with the same model (and LoRA settings)"
            )
        restored = ComputeTracker(**{**asdict(self), **state})
        for name in known:
            setattr(self, name, getattr(restored, name))

    def save(self, path: str | Path) -> Path:
        """Write the state as JSON (e.g. ``compute.json`` inside a checkpoint folder)."""
        path = Path(path)
        _write_text_atomic(path, json.dumps(self.state_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ComputeTracker:
        """A tracker from a file written by :meth:`save`."""
        state = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(state, dict) or "n_params" not in state:
            raise ValueError(f"{path} does not hold a ComputeTracker state")
        tracker = cls(n_params=state["n_params"])
        tracker.load_state_dict(state)
        return tracker


_COUNTERS: tuple[str, ...] = tuple(
    f.name for f in fields(ComputeTracker) if f.name.endswith("_tokens")
)
