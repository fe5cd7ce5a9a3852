"""A byte-level BPE tokenizer trained locally, with a ChatML chat template, for the tiny tier.

No tokenizer can be downloaded here, so the tiny models get their own: byte-level BPE (any text,
any Unicode, encodes and decodes back exactly) trained with ``tokenizers`` on a built-in corpus
that covers the vocabulary of the study's prompts, answers and feedback. Training is deterministic,
so the same corpus and vocabulary size always give the same tokenizer.

The chat template is ChatML (``<|im_start|>role\\n...<|im_end|>\\n``). It marks assistant turns
with ``{% generation %}`` so TRL's ``assistant_only_loss=True`` can mask everything else, and the
assistant's ``<|im_end|>`` sits inside the marked span so the model learns to stop. Message
contents may be strings or lists of ``{"type": "image"}`` / ``{"type": "text", "text": ...}``
parts; an image part renders as ``<image>``, which a Llava processor expands to the image tokens.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from sftvrl.envs.general_points import Rules, deal, expert_formula, verify
from sftvrl.prompts.general_points import feedback_prompt, response_text, task_prompt

PAD_TOKEN = "<|pad|>"
ENDOFTEXT_TOKEN = "<|endoftext|>"
IM_START_TOKEN = "<|im_start|>"
IM_END_TOKEN = "<|im_end|>"
IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS: tuple[str, ...] = (
    PAD_TOKEN,
    ENDOFTEXT_TOKEN,
    IM_START_TOKEN,
    IM_END_TOKEN,
    IMAGE_TOKEN,
)
"""Ids 0-4 in this order; ``<|im_end|>`` ends a turn (eos), ``<|pad|>`` pads (on the left)."""

CHAT_TEMPLATE = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- else -%}{%- for part in content -%}"
    "{%- if part['type'] == 'image' -%}{{- '<image>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}"
    "{{- render(message['content']) + '<|im_end|>' -}}"
    "{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + render(message['content']) + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
"""ChatML with ``{% generation %}`` around each assistant answer and its ``<|im_end|>``."""

_VIRL_TEXT = """\
[Task Description]
You are an expert in navigation. You will receive a numbered list of navigation instructions, and \
at every step your current observation together with the history of your past observations and \
actions. First work out which sentence of the instruction has to be executed now, then choose the \
action to take.
[Instruction]
1. First, turn right to face north. 2. Move forward until you reach the next intersection where \
Starbucks is on your left front. 3. Turn slightly left to face northeast. 4. Move forward until \
the destination Hotel Central is on your right.
[Observation format]
The image is a 2x2 grid of street views around you, arranged as [front, right / back, left]. \
Please identify if any landmarks in the instruction are visible in the street views.
[Action space]
"forward()": move forward one step
"turn_direction(x)": turn to face direction x, where x is one of ['north', 'northeast', 'east', \
'southeast', 'south', 'southwest', 'west', 'northwest']
"turn_direction(x)": turn to face direction x, where x is one of ['left', 'right', \
'slightly left', 'slightly right']
"stop()": the navigation is finished
[Observations and actions sequence]
O_1: No landmark nearby; You observe an intersection
A_1: turn_direction(north)
O_2: Starbucks is on your left front; You observe an intersection
A_2: forward()
O_3: The destination Hotel Central is on your right back; You observe an image of 4 views;
A_3: stop()
[Output]
Your response should be a valid json file in the following format:
{
  "current observation": your current observation,
  "current instruction": the sentence of the instruction to execute now,
  "action": the action to take, from the action space,
}
Please only output the json.
Follow the route instructions. Actions: forward() | turn_direction(x), x in {left, right} | stop()
History: Answer: {"current observation": "...", "current instruction": "...", "action": "..."}
You failed this trial because your action is wrong. You failed this trial because you gave an \
action that is not in the action space.
"""

_SYMBOLS_TEXT = (
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 "
    "+ - * / ( ) = x X × ÷ − . , : ; ' \" [ ] { } < > _ | ! ? @ # $ % & ^ ~ ` \\ \n\t "
    "A 2 3 4 5 6 7 8 9 10 J Q K Ace Jack Queen King spades hearts diamonds clubs ♠ ♥ ♦ ♣ "
    "SA S10 HK DQ CJ red black true false null None yes no"
)


def _general_points_texts(n_hands: int = 24, seed: int = 0) -> Iterator[str]:
    """Prompts, expert answers and verifier feedback over a few dealt hands, every layout and rule."""
    rng = random.Random(seed)
    rule_sets = (Rules.id(), Rules.rule_ood(), Rules.id(vision=True), Rules.visual_ood())
    for i in range(n_hands):
        rules = rule_sets[i % len(rule_sets)]
        hand = deal(rules, rng)
        formula = expert_formula(hand)
        for layout in ("paper", "compact"):
            for vision in (False, True):
                yield task_prompt(hand, rules, vision=vision, layout=layout)
            yield response_text(hand, formula, layout=layout)
        wrong = formula.replace("+", "-", 1) if "+" in formula else formula + "+1"
        for answer in (response_text(hand, wrong), "(1+2", "I don't know", '{"formula": "9 9"}'):
            for mode in ("exact", "paper"):
                yield feedback_prompt(verify(answer, hand, mode=mode).message)  # type: ignore[arg-type]


def default_corpus() -> list[str]:
    """The built-in training text: GeneralPoints and V-IRL prompt vocabulary, symbols, digits."""
    return [_SYMBOLS_TEXT, _VIRL_TEXT, *_general_points_texts()]


def build_tokenizer(
    corpus: Iterable[str] | None = None, vocab_size: int = 512
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer locally (deterministic) and wrap it for transformers.

    ``vocab_size`` is an upper bound: a small corpus yields fewer merges. The special tokens get
    ids 0-4 (see :data:`SPECIAL_TOKENS`); padding is on the left, as batched generation needs.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(
            f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)} (256 bytes + "
            f"{len(SPECIAL_TOKENS)} special tokens), got {vocab_size}"
        )
    texts = default_corpus() if corpus is None else list(corpus)
    model = Tokenizer(models.BPE())
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    model.train_from_iterator(texts, trainer)
    return wrap_tokenizer(model)


def wrap_tokenizer(model: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a ``tokenizers.Tokenizer`` that holds :data:`SPECIAL_TOKENS` as the project's tokenizer."""
    missing = [t for t in SPECIAL_TOKENS if model.token_to_id(t) is None]
    if missing:
        raise ValueError(f"the tokenizer lacks the special tokens {missing}")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=model,
        pad_token=PAD_TOKEN,
        eos_token=IM_END_TOKEN,
        extra_special_tokens=[ENDOFTEXT_TOKEN, IM_START_TOKEN, IMAGE_TOKEN],
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
