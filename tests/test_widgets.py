"""The widgets, driven headless: set values, click buttons, read what the page would show.

No kernel or browser is needed: ``on_click`` and ``observe`` handlers run synchronously. The text
boxes sync their value on Enter (``continuous_update=False``), so setting ``value`` is pressing
Enter. The real-browser run is in
``test_browser.py``; the notebook's papermill run is the last test here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sftvrl.envs.general_points import Hand, Rules, solutions
from sftvrl.train.rollout import ExpertResponder, Response, ScriptedResponder
from sftvrl.widgets import GeneralPointsGame, VirlWalk
from sftvrl.widgets.common import esc, load_cached

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_play_general_points.ipynb"


def a_solution(hand: Hand) -> str:
    return solutions(hand.numbers, hand.rules.target)[0]


@pytest.fixture
def game() -> GeneralPointsGame:
    return GeneralPointsGame(seed=3, max_new_tokens=8, verify_iter=2)


# -- the human plays ---------------------------------------------------------------------------


def test_human_solves_a_hand_by_typing_a_formula_and_pressing_enter(game):
    hand = game.hand
    assert hand is not None and game.cards_box.value == " ".join(hand.cards)
    assert f'data-cards="{" ".join(hand.cards)}"' in game.table.value
    game.answer_box.value = a_solution(hand)  # typed, then Enter
    assert "Correct!" in game.verdict.value and "reward +5" in game.verdict.value
    assert game.last_verdict is not None and game.last_verdict.success
    assert (game.score.human_wins, game.score.human_hands) == (1, 1)
    assert "1 / 1 hands" in game.scoreboard.value
    game.submit_button.click()  # solving the same hand again does not count twice
    assert (game.score.human_wins, game.score.human_hands) == (1, 1)


def test_wrong_and_malformed_answers_show_the_verifiers_message(game):
    game.deal("SA H3 DK C6")  # values 1, 3, 10, 6
    game.answer_box.value = "2*12"
    assert "INCORRECT_NUMBER" in game.verdict.value
    assert "you used invalid numbers: [2, 12]" in game.verdict.value
    game.submit("(1+3)*6")  # a valid formula that leaves a card out
    assert "didn&#x27;t use numbers: [10]" in game.verdict.value
    # text with a "formula" field is checked as a model's answer, malformed or not
    game.submit('{"cards": ["A", "3"], "formula": "10*3-6**1"')
    assert game.last_verdict.outcome.value == "ILLEGAL_FORMULA"
    assert "invalid sequence after operator" in game.verdict.value
    assert "read: cards" in game.verdict.value and "10*3-6**1" in game.verdict.value
    assert "verifier:" in game.verdict.value
    game.submit("")
    assert "Type a formula" in game.verdict.value
    assert (game.score.human_wins, game.score.human_hands) == (0, 1)
    assert game.last_error is None


def test_the_paper_verifier_keeps_its_quirks(game):
    game.deal("SA H3 DK C6")
    game.submit("10 * 3 - 6 * 1")
    assert game.last_verdict.success  # exact mode allows spaces
    game.mode.value = "paper"
    game.submit("10 * 3 - 6 * 1")
    assert "illegal characters" in game.verdict.value


def test_rule_controls_deal_under_the_rule_they_show(game):
    first = game.hand
    game.split.value = "rule_ood"
    assert game.face.value == "jqk" and game.require_face.value
    assert game.hand is not first and game.hand.rules == Rules.rule_ood()
    assert any(rank in "JQK" for rank in game.hand.ranks)
    game.face.value = "10"  # no preset says "J/Q/K = 10 with a face card required"
    assert game.split.value == "custom" and game.hand.rules.face == "10"
    game.require_face.value = False
    assert game.split.value == "id"
    game.target.value = 30
    assert game.split.value == "custom" and game.hand.rules.target == 30
    assert solutions(game.hand.numbers, 30)
    assert "make <b>30</b>" in game.table.value


def test_the_vision_variant_shows_the_rendered_cards(game):
    assert game.image.layout.display == "none" and "sftvrl-chip" in game.table.value
    game.variant.value = True
    assert game.image.value[:4] == b"\x89PNG" and game.image.layout.display is None
    assert game.suits.value == "black"  # GP-VL's training rule
    assert game.picker.name == "tiny-vlm"  # the tiny model follows the variant
    assert "sftvrl-chip" not in game.table.value
    game.picker.select("tiny-text")
    assert game.variant.value is False


def test_the_game_offers_the_shipped_foundations_and_switches_them_with_the_variant(game):
    values = [value for _, value in game.picker.choice.options]
    assert {"tiny-text-gp", "tiny-vlm-gp"} <= set(values) and "tiny-text-virl" not in values
    game.picker.select("tiny-text-gp")
    game.variant.value = True
    assert game.picker.name == "tiny-vlm-gp"
    game.variant.value = False
    assert game.picker.name == "tiny-text-gp"
    game.picker.select("expert")
    game.variant.value = True
    assert game.picker.name == "expert"  # only tiny models follow the variant


def test_typed_cards_and_bad_card_codes(game):
    game.cards_box.value = "SA, H3, DK, C6"  # typed, then Enter
    assert game.hand.cards == ("SA", "H3", "DK", "C6") and game.last_error is None
    dealt = game.hands_dealt
    game.set_cards_button.click()  # the same cards: no second deal
    assert game.hands_dealt == dealt
    game.cards_box.value = "sa h3 dk c7"
    game.set_cards_button.click()
    assert game.hand.cards == ("SA", "H3", "DK", "C7") and game.hands_dealt == dealt + 1
    game.cards_box.value = "SA H3 XX C6"
    assert "Dealing failed" in game.status.value and "bad card code" in game.status.value
    assert game.hand.cards == ("SA", "H3", "DK", "C7")  # the table is unchanged
    game.deal("SA H3 DK")
    assert "a hand has 4 cards; got 3" in game.status.value
    game.deal("SA SA SA SA")  # 1, 1, 1, 1 cannot make 24: playable, and the table says so
    assert "no solution" in game.table.value and game.status.value == ""


def test_show_solutions_toggles_and_peeking_is_not_a_win(game):
    game.deal("SA H3 DK C6")
    found = game.show_solutions()
    assert found == solutions((1, 3, 10, 6), 24)
    assert f"{len(found)} solutions" in game.solutions_box.value
    assert esc(found[0]) in game.solutions_box.value
    game.submit(found[0])
    assert "not counted" in game.verdict.value
    assert (game.score.human_wins, game.score.human_hands) == (0, 1)
    game.solutions_button.click()
    assert game.solutions_box.value == "" and game.solutions_button.description == "Show solutions"
    game.deal_button.click()
    game.submit(a_solution(game.hand))
    assert (game.score.human_wins, game.score.human_hands) == (1, 2)


# -- the model plays ---------------------------------------------------------------------------


def test_tiny_model_plays_turn_by_turn_and_its_garbage_gets_the_verifiers_feedback(game):
    snapshots: list[str] = []
    game.model_log.observe(lambda change: snapshots.append(change["new"]), "value")
    game.ask_button.click()
    assert game.last_error is None
    episode = game.last_episode
    assert episode is not None and not episode.success and len(episode.turns) == 2
    log = game.model_log.value
    assert log.count("sftvrl-turn") == 2 and "did not solve it" in log
    for turn in episode.turns:
        assert esc(turn.info["feedback"], 500) in log
        assert esc(turn.response.text) in log
    # the prompts: the task first, then the chat with the verifier's feedback
    assert "prompt the model saw at turn 2" in log
    assert "Cards: [" in game.model_turns[0]["prompt"]
    assert "You failed this trial because" in game.model_turns[1]["prompt"]
    # shown as they arrive: turn 1's verdict was on the page while turn 2 was being generated
    assert any("Turn 1 · " in s and "Turn 2: tiny-text is answering" in s for s in snapshots)
    assert (game.score.model_wins, game.score.model_games) == (0, 1)
    assert not game.ask_button.disabled and not game.deal_button.disabled


def test_the_model_revises_after_feedback_until_it_succeeds(game):
    def answer(request) -> str:
        if request.info["attempt"] == 0:
            return 'I think "formula": "10*3-6**1"'
        return request.env.expert_response()

    game.deal("SA H3 DK C6")
    game.add_model("reviser", ScriptedResponder(answer))
    assert game.picker.name == "reviser"
    game.ask_model()
    turns = game.model_turns
    assert [t["outcome"] for t in turns] == ["ILLEGAL_FORMULA", "CORRECT_SOLUTION"]
    assert "solved it" in game.model_log.value and "on turn 2" in game.model_log.value
    assert "You failed this trial because invalid sequence after operator" in turns[1]["prompt"]
    game.picker.select("expert")
    assert isinstance(game.picker.load()[1], ExpertResponder)
    assert game.ask_model().success
    assert (game.score.model_wins, game.score.model_games) == (2, 2)


def test_a_vision_model_plays_the_vision_variant():
    game = GeneralPointsGame(vision=True, model="tiny-vlm", max_new_tokens=6, verify_iter=1)
    episode = game.ask_model()
    assert game.last_error is None and len(episode.turns) == 1
    assert "<image>" in game.model_turns[0]["prompt"] or "image" in game.model_turns[0]["prompt"]
    assert "verifier:" in game.model_log.value


def test_a_model_that_fails_to_load_shows_a_message(game, tmp_path):
    game.picker.select("/no/such/checkpoint")
    assert game.picker.path.layout.display is None  # the folder / id box is shown
    assert game.ask_model() is None
    assert type(game.last_error).__name__ == "ModelLoadError"
    assert "Asking the model failed" in game.model_log.value
    assert "no model folder at" in game.model_log.value
    game.picker.path.value = str(tmp_path)  # a folder without a checkpoint
    game.ask_button.click()
    assert "cannot load the checkpoint in" in game.model_log.value
    game.picker.path.value = "  "
    game.ask_button.click()
    assert "type a checkpoint folder" in game.model_log.value
    assert not game.ask_button.disabled and game.score.model_games == 0


def test_a_model_that_cannot_see_the_variant_is_refused_with_a_message(game):
    game.add_model("my vlm", load_cached("tiny-vlm"))
    game.variant.value = False
    game.ask_model()
    assert "vision-language model but the game is in the text variant" in game.model_log.value


def test_an_unexpected_error_is_shown_below_the_turns_so_far(game):
    def breaks_at_turn_2(requests):
        if requests[0].info["attempt"] == 1:
            raise RuntimeError("the GPU caught fire")
        return [Response("no idea") for _ in requests]

    game.add_model("fragile", breaks_at_turn_2)
    game.ask_button.click()
    log = game.model_log.value
    assert "Turn 1 · " in log and "no &quot;formula&quot; field" in log
    assert "(RuntimeError)" in log and "caught fire" in log and "traceback" in log
    assert "is answering" not in log and not game.ask_button.disabled
    assert game.score.model_games == 0


def test_the_paper_step_limit_turn_is_shown_unverified(game):
    game.mode.value = "paper"
    game.verify_iter.value = 1
    game.add_model("stubborn", ScriptedResponder(lambda request: '"formula": "1+1"'))
    episode = game.ask_model()
    assert [t.info["outcome"] for t in episode.turns] == ["AGGREGATED_ERROR", "STEP_LIMIT"]
    assert "step limit" in game.model_log.value and "step_limit_reached" in game.model_log.value


def test_model_text_is_escaped_and_cut(game):
    evil = "<script>alert(1)</script>\x07" + "x" * 5000
    game.add_model("evil", lambda requests: [Response(evil) for _ in requests])
    game.verify_iter.value = 1
    game.ask_model()
    log = game.model_log.value
    assert "<script>" not in log and "&lt;script&gt;" in log and "\\x07" in log
    assert "more characters)" in log


def test_the_widget_state_embeds_in_a_page(game, tmp_path):
    from ipywidgets.embed import embed_minimal_html

    game.variant.value = True
    embed_minimal_html(tmp_path / "game.html", views=[game.widget], title="game")
    assert "sftvrl-hand" in (tmp_path / "game.html").read_text()


# -- V-IRL -------------------------------------------------------------------------------------


@pytest.fixture
def walk() -> VirlWalk:
    return VirlWalk(split="mini", max_new_tokens=8, view_size=64)


def test_virl_walk_follows_the_expert_to_the_destination(walk):
    assert walk.last_error is None and "Point 1 of" in walk.header.value
    assert walk.image.value[:4] == b"\x89PNG"
    assert "sftvrl-current" in walk.instruction.value
    n_points = len(walk.env.rail.entries)
    for _ in range(n_points):
        walk.expert_button.click()
    assert walk.done and "arrived" in walk.header.value and walk.last_error is None
    walk.expert_button.click()
    assert "route is finished" in walk.status.value
    walk.start_button.click()
    assert not walk.done and "Point 1 of" in walk.header.value


def test_virl_walk_compares_the_models_action_with_the_experts(walk):
    walk.expert_step()
    expert_action = walk.info["expected_action"]
    walk.ask_button.click()
    assert walk.last_error is None and "differs from" in walk.model_view.value
    assert esc(expert_action) in walk.model_view.value
    assert "prompt the model saw" in walk.model_view.value
    walk.picker.select("expert")
    verdict = walk.ask_model()
    assert verdict.correct and "matches" in walk.model_view.value
    walk.picker.select("/no/such/model")
    walk.ask_model()
    assert "no model folder at" in walk.model_view.value


def test_virl_walk_settings_restart_the_walk(walk):
    walk.route.value = 5
    assert walk.info["route_index"] == 5
    walk.route.value = 10_000  # clamped to the last route
    assert walk.info["route_index"] == len(walk.env.source) - 1
    assert "absolute (compass)" in walk.header.value
    walk.variant.value = True
    assert walk.env.vision and walk.picker.name == "tiny-vlm"
    assert walk.ask_model() is not None and walk.last_error is None


# -- the notebook ------------------------------------------------------------------------------


def test_the_notebook_runs_headless_with_papermill(tmp_path):
    import papermill as pm

    out = tmp_path / "out.ipynb"
    pm.execute_notebook(
        str(NOTEBOOK),
        str(out),
        parameters={"virl_split": "mini", "seed": 1},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(tmp_path),
    )
    import nbformat

    nb = nbformat.read(out, as_version=4)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    html = " ".join(str(model["state"].get("value", "")) for model in state.values())
    assert "sftvrl-hand" in html and "Point 1 of" in html
    views = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "application/vnd.jupyter.widget-view+json" in output.get("data", {})
    ]
    assert len(views) == 2
    assert not any(
        output.get("output_type") == "error"
        for cell in nb.cells
        for output in cell.get("outputs", [])
    )
