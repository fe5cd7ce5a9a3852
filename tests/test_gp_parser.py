"""The tolerant answer parser: loose JSON in, fields out, never an exception."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sftvrl.envs.general_points import parse_response
from sftvrl.envs.general_points.parser import normalise_rank

PAPER_ANSWER = """{
  "cards": ['A', '3', 'K', '6'],
  "number": [1, 3, 13, 6],
  "formula": "(1+6)*3+13=24",
}"""


def test_reads_the_paper_format_with_its_trailing_comma():
    parsed = parse_response(PAPER_ANSWER)
    assert parsed.formula == "(1+6)*3+13=24"
    assert parsed.formula_lhs == "(1+6)*3+13"
    assert parsed.cards == ("A", "3", "K", "6")
    assert parsed.numbers == (1, 3, 13, 6)


@pytest.mark.parametrize(
    "text",
    [
        "```json\n" + PAPER_ANSWER + "\n```",
        "Sure! Here is my answer:\n" + PAPER_ANSWER + "\nGood luck.",
        PAPER_ANSWER.replace('"', "'"),
        '{"formula": "(1+6)*3+13=24", "number": [1,3,13,6], "cards": ["A","3","K","6"]}',
        "{'cards': ['SA', 'h3', 'king', '6♠'], 'number': ['1','3','13','6'], 'formula': '(1+6)*3+13=24'}",
        "cards: [A, 3, K, 6]\nnumber: [1, 3, 13, 6]\nformula: (1+6)*3+13=24",
    ],
)
def test_tolerates_loose_variants(text):
    parsed = parse_response(text)
    assert parsed.formula_lhs == "(1+6)*3+13"
    assert parsed.cards == ("A", "3", "K", "6")
    assert parsed.numbers == (1, 3, 13, 6)


def test_last_answer_wins():
    text = '"formula": "1+2", then I corrected it: "formula": "4*6"'
    assert parse_response(text).formula == "4*6"


def test_missing_fields_are_none():
    parsed = parse_response("I do not know")
    assert (parsed.formula, parsed.cards, parsed.numbers) == (None, None, None)
    assert parse_response('"number": [1, x, 3]').numbers is None
    assert parse_response(None).formula is None


@pytest.mark.parametrize(
    ("item", "rank"),
    [("'K'", "K"), ('"10"', "10"), ("T", "10"), ("ace", "A"), ("SQ", "Q"), ("K♥", "K"), ("7", "7")],
)
def test_normalise_rank(item, rank):
    assert normalise_rank(item) == rank


def test_huge_and_hostile_inputs_return_quickly():
    for text in (
        "x" * 3_000_000,
        '"formula": "' + "(" * 100_000,
        '"cards": [' + "'A'," * 200_000,
        "\x00\x01\x02" * 10_000,
        "{\"formula\": \"__import__('os').system('echo hi')\"}",
    ):
        parse_response(text)


@given(st.text(max_size=400))
def test_never_raises(text):
    parsed = parse_response(text)
    assert parsed.text == text
