"""The user turn that follows a wrong answer, shared by every task (the paper's wording)."""

FEEDBACK_PREFIX = "You failed this trial because "


def feedback_prompt(message: str) -> str:
    """The paper's prefix followed by the verifier's message."""
    return FEEDBACK_PREFIX + message
