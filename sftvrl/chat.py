"""Chat messages as every part of the project writes them (rollouts, SFT data, the widget).

Text chats use plain string contents. Vision chats use lists of content parts in *every* turn (an
image part first in the first user turn): VLM chat templates expect parts, and a dataset column
must hold one type. Image parts carry ``"text": None`` so text and image parts share one schema.
"""

from __future__ import annotations

from typing import Any

Message = dict[str, Any]


def turn(role: str, text: str, *, vision: bool, image: bool = False) -> Message:
    """One chat turn; ``image=True`` puts the image part before the text (first user turn)."""
    if not vision:
        if image:
            raise ValueError("a text chat cannot carry an image part")
        return {"role": role, "content": text}
    parts: list[dict[str, Any]] = [{"type": "image", "text": None}] if image else []
    parts.append({"type": "text", "text": text})
    return {"role": role, "content": parts}


def text_of(message: Message) -> str:
    """The text of a turn, whichever form its content has."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part.get("type") == "text")
