"""Prompt templates: the paper's layouts (paper-compat) and compact ones for the tiny tier."""

from sftvrl.prompts.general_points import (
    FEEDBACK_PREFIX,
    feedback_prompt,
    response_text,
    task_prompt,
)

__all__ = ["FEEDBACK_PREFIX", "feedback_prompt", "response_text", "task_prompt"]
