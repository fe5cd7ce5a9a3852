"""Heading discretisation, relations and instruction text of V-IRL."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sftvrl.envs.virl.geometry import (
    COMPASS,
    RELATIONS,
    angle_diff,
    bearing,
    compass_word,
    int_bearing,
    relation_word,
    relative_word,
    to_latlng,
    to_local,
)
from sftvrl.envs.virl.instructions import (
    format_milestone_info,
    move_sentence,
    parse_heading,
    parse_milestone_info,
    relative_words,
    sentences,
)
from sftvrl.envs.virl.model import NO_LANDMARK, Milestone

degrees = st.floats(min_value=0.0, max_value=359.999, allow_nan=False)


def test_bearing_compass_frame():
    assert bearing((0, 0), (0, 1)) == pytest.approx(0.0)
    assert bearing((0, 0), (1, 0)) == pytest.approx(90.0)
    assert bearing((0, 0), (0, -1)) == pytest.approx(180.0)
    assert bearing((0, 0), (-1, 0)) == pytest.approx(270.0)
    assert int_bearing((0, 0), (1, 1)) == 45


@pytest.mark.parametrize(
    ("deg", "word"),
    [
        (0, "north"),
        (22, "north"),
        (23, "northeast"),
        (90, "east"),
        (177, "south"),
        (338, "north"),
        (337, "northwest"),
    ],
)
def test_compass_examples(deg, word):
    assert compass_word(deg) == word


def test_compass_tie_goes_to_earlier_word():
    assert compass_word(22.5) == "north"
    assert compass_word(67.5) == "northeast"


@given(degrees)
def test_compass_is_nearest_bin(deg):
    word = compass_word(deg)
    k = COMPASS.index(word)
    assert abs(angle_diff(45.0 * k, deg)) <= 22.5 + 1e-9


@given(degrees, degrees)
def test_relative_wraps_around_north_in_exact_mode(prev, new):
    word = relative_word(prev, new, wrap=True)
    delta = angle_diff(prev, new)
    assert -180 <= delta < 180
    expected = (
        "left"
        if delta < -45
        else "right"
        if delta > 45
        else "slightly left"
        if delta <= 0
        else "slightly right"
    )
    assert word == expected
    # Rotating both headings together never changes a wrapped label.
    assert relative_word((prev + 123) % 360, (new + 123) % 360, wrap=True) == word


def test_relative_quirk_of_paper_mode():
    # 350° → 10° is a 20° right turn; the official code labels it "left" (raw Δ = −340).
    assert relative_word(350, 10, wrap=True) == "slightly right"
    assert relative_word(350, 10, wrap=False) == "left"
    # A U-turn from 10° to 190° is "right" in the official code.
    assert relative_word(10, 190, wrap=False) == "right"
    # Going straight is "slightly left" in both modes: the vocabulary has no "straight".
    assert relative_word(90, 90, wrap=True) == relative_word(90, 90, wrap=False) == "slightly left"


@given(st.integers(0, 359), st.integers(0, 359))
def test_modes_agree_when_no_wrap_is_needed(prev, new):
    # Route bearings are integers (as in milestone_info), so no float rounding at Δ = 0.
    if abs(new - prev) < 180:
        assert relative_word(prev, new, wrap=True) == relative_word(prev, new, wrap=False)


@given(degrees, degrees)
def test_relation_bins(heading, target):
    word = relation_word(heading, target)
    k = RELATIONS.index(word)
    assert abs(angle_diff(45.0 * k, (target - heading) % 360)) <= 22.5 + 1e-9


def test_relation_examples():
    assert relation_word(0, 0) == "front"
    assert relation_word(0, 90) == "right"
    assert relation_word(90, 45) == "left front"
    assert relation_word(350, 190) == "behind"
    assert relation_word(0, 225) == "left behind"


@given(
    st.floats(-5000, 5000, allow_nan=False),
    st.floats(-5000, 5000, allow_nan=False),
)
def test_latlng_round_trip(x, y):
    origin = (40.7, -74.0)
    back = to_local(*to_latlng((x, y), origin), origin)
    assert back[0] == pytest.approx(x, abs=1e-6)
    assert back[1] == pytest.approx(y, abs=1e-6)


def _ms() -> list[Milestone]:
    return [
        Milestone(
            1, (0, 100), 0, "north", "Hotel 32One is on your right behind", "Hotel 32One", False
        ),
        Milestone(2, (100, 100), 90, "east", NO_LANDMARK, None, False),
        Milestone(
            3, (100, 0), 180, "south", "The destination Cafe X is on your right", "Cafe X", True
        ),
    ]


def test_instruction_sentences_have_the_official_shapes():
    ms = _ms()
    rels = relative_words(ms, 270, wrap=True)
    assert rels == ["right", "right", "right"]
    lines = sentences(ms, rels)
    assert lines == [
        "First, turn right to face north.",
        "Move forward until you reach next intersection where Hotel 32One is on your right behind.",
        "Turn right to face east.",
        "Move forward until you reach next intersection.",
        "Turn right to face south.",
        "Move forward until you reach destination where The destination Cafe X is on your right.",
    ]
    assert move_sentence(ms[1]) == "Move forward until you reach next intersection."


def test_every_turn_sentence_carries_both_words():
    ms = _ms()
    for rel in ("left", "right", "slightly left", "slightly right"):
        lines = sentences(ms, [rel] * 3)
        for m, line in zip(ms, lines[0::2], strict=True):
            assert rel in line and m.compass in line


def test_milestone_info_round_trip():
    ms = _ms()
    text = format_milestone_info(ms, [100.0, 100.0, 100.0], [0, 0, 90])
    blocks = parse_milestone_info(text)
    assert len(blocks) == 3
    assert blocks[0]["landmarks"] == "Hotel 32One is on your right behind"
    assert blocks[2]["to_next_intersection_heading"] == "180 (south)"
    assert blocks[1]["distance"] == "100.0 meters"
    assert [parse_heading(b["to_next_intersection_heading"]) for b in blocks] == [
        (0, "north"),
        (90, "east"),
        (180, "south"),
    ]


def test_parse_milestone_info_tolerates_official_punctuation():
    text = (
        '{\n"landmarks": "A is on your left",\n"to_next_intersection_heading": "45 (northeast)",\n}'
    )
    assert parse_milestone_info(text) == [
        {"landmarks": "A is on your left", "to_next_intersection_heading": "45 (northeast)"}
    ]
    with pytest.raises(ValueError, match="expected"):
        parse_heading("north-ish")
