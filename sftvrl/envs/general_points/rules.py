"""The rule of a GeneralPoints game: target, face-card values, suits and how cards are dealt.

One frozen dataclass carries every knob the paper varies (App. A.3), so a split is a value, not a
code path: ``Rules.id()`` trains, ``Rules.rule_ood()`` changes what J/Q/K are worth, and
``Rules.visual_ood()`` changes only the colour of the suits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RANKS: tuple[str, ...] = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")
"""Plain ranks in order; the position + 1 is the rank's face value (A=1 ... K=13)."""

FACE_RANKS: frozenset[str] = frozenset({"J", "Q", "K"})

SUITS: dict[str, tuple[str, ...]] = {
    "black": ("S", "C"),
    "red": ("H", "D"),
    "all": ("S", "H", "D", "C"),
}
"""Suit letters per colour: S spades, C clubs (black); H hearts, D diamonds (red)."""

FaceRule = Literal["10", "jqk"] | tuple[int, int, int]
"""``"10"`` (J/Q/K = 10), ``"jqk"`` (11/12/13), or any ``(J, Q, K)`` values, e.g. ``(5, 7, 2)``.

The paper uses only the first two; other assignments serve the tiny tier's foundation corpus,
where the model learns to read a rule stated in its prompt on values it is never tested on."""
_NAMED_FACES: dict[str, tuple[int, int, int]] = {"10": (10, 10, 10), "jqk": (11, 12, 13)}
SuitRule = Literal["all", "black", "red"]


@dataclass(frozen=True)
class Rules:
    """How a hand is dealt and what its cards are worth.

    ``face="10"`` counts J/Q/K as 10 (training, ID); ``face="jqk"`` as 11/12/13 (rule OOD); a
    tuple ``(j, q, k)`` as those values (each 1..13). Ace is always 1. ``require_face`` forces at least one J/Q/K in the hand, as the paper's rule-OOD split
    does. ``with_replacement=True`` draws each card independently, as the official code does; False
    deals from a real 52-card deck, as the paper's text says.
    """

    target: int = 24
    face: FaceRule = "10"
    suits: SuitRule = "all"
    require_face: bool = False
    with_replacement: bool = True
    n_cards: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.face, list):
            object.__setattr__(self, "face", tuple(self.face))
        if isinstance(self.face, tuple):
            if len(self.face) != 3 or not all(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 13 for v in self.face
            ):
                raise ValueError(
                    f"Rules.face as values must be three ints in 1..13 (J, Q, K), got {self.face!r}"
                )
        elif self.face not in _NAMED_FACES:
            raise ValueError(
                f"Rules.face must be '10', 'jqk' or a (J, Q, K) tuple of values, got {self.face!r}"
            )
        if self.suits not in SUITS:
            raise ValueError(f"Rules.suits must be one of {sorted(SUITS)}, got {self.suits!r}")
        if not 1 <= self.n_cards <= 6:
            raise ValueError(f"Rules.n_cards must be between 1 and 6, got {self.n_cards}")
        if not isinstance(self.target, int) or isinstance(self.target, bool):
            raise TypeError(f"Rules.target must be an int, got {self.target!r}")

    # -- presets --------------------------------------------------------------------------------
    @classmethod
    def id(cls, *, vision: bool = False, **overrides: object) -> Rules:
        """Training / in-distribution rule: J/Q/K = 10; black suits for GP-VL, all suits for GP-L."""
        return cls(face="10", suits="black" if vision else "all", **overrides)  # type: ignore[arg-type]

    @classmethod
    def rule_ood(cls, *, vision: bool = False, **overrides: object) -> Rules:
        """Rule OOD: J/Q/K = 11/12/13 and at least one face card, suits as in training."""
        return cls(
            face="jqk",
            require_face=True,
            suits="black" if vision else "all",
            **overrides,  # type: ignore[arg-type]
        )

    @classmethod
    def visual_ood(cls, **overrides: object) -> Rules:
        """Visual OOD: the training rule (J/Q/K = 10) drawn in red suits only."""
        return cls(face="10", suits="red", **overrides)  # type: ignore[arg-type]

    @classmethod
    def for_split(cls, split: str, *, vision: bool = False, **overrides: object) -> Rules:
        """The preset for a split name: ``"id"``, ``"rule_ood"`` or ``"visual_ood"``."""
        if split == "id":
            return cls.id(vision=vision, **overrides)
        if split == "rule_ood":
            return cls.rule_ood(vision=vision, **overrides)
        if split == "visual_ood":
            return cls.visual_ood(**overrides)
        raise ValueError(f"unknown split {split!r}; expected 'id', 'rule_ood' or 'visual_ood'")

    # -- values ---------------------------------------------------------------------------------
    def value(self, rank: str) -> int:
        """The number a plain rank ('A', '2'..'10', 'J', 'Q', 'K') counts as under this rule."""
        try:
            face_value = RANKS.index(rank) + 1
        except ValueError:
            raise ValueError(f"unknown rank {rank!r}; expected one of {list(RANKS)}") from None
        if rank in FACE_RANKS:
            return self.face_values[RANKS.index(rank) - 10]
        return face_value

    @property
    def face_values(self) -> tuple[int, int, int]:
        """What J, Q and K count as, in that order."""
        if isinstance(self.face, tuple):
            return self.face
        return _NAMED_FACES[self.face]

    @property
    def values(self) -> tuple[int, ...]:
        """Every value a card can have under this rule, ascending."""
        return tuple(sorted(set(range(1, 11)) | set(self.face_values)))

    @property
    def face_card_message(self) -> str:
        """How the prompt states the face-card rule (the paper's wording, for any values)."""
        j, q, k = self.face_values
        if j == q == k:
            return f"'J', 'Q', and 'K' count as '{j}'."
        return f"'J', 'Q', and 'K' count as '{j}', '{q}', and '{k}' respectively."
