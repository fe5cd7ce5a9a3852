"""The GRPO arm: episodes as exact token sequences for TRL's rollout_func, and GRPO on tiny GP-L.

Checked: the token sequence of an episode is the chat the environment played (env_mask zeros
exactly the inserted feedback turns, the answers are the sampled ids, rewards are the env's
verdicts when the answers are replayed), the sampling log-probabilities are the model's in exactly
that context, V-IRL points become single-point episodes; GRPOTrainer steps train on GP-L and GP-VL
(metrics, GFLOPs and evaluations in the run folder), raise a scripted reward, and a killed run
resumes to the weights and counts of an uninterrupted one.
"""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerCallback

from sftvrl.data import make_task_env
from sftvrl.models import ModelConfig, TinyTextConfig, load_policy
from sftvrl.prompts.feedback import FEEDBACK_PREFIX
from sftvrl.runs import read_metric_records
from sftvrl.train.grpo import (
    EPISODE_KEY,
    EpisodeEnv,
    EpisodeReward,
    GRPOArmConfig,
    StartState,
    TokenResponder,
    build_prompt_dataset,
    episode_return,
    episodes_to_rollout,
    make_rollout_func,
    start_states,
    train_grpo,
)
from sftvrl.train.rollout import rollout

SMALL = TinyTextConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and while another process holds a core,
    two spinning OpenMP threads make each of their matmuls about 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def policy():
    return load_policy(ModelConfig(name_or_path="tiny-text", seed=0, tiny=SMALL))


def gp_config(**overrides):
    settings = {
        "task": "gp-l",
        "prompt": "compact",
        "verify_iter": 3,
        "n_prompts": 4,
        "num_generations": 2,
        "batch_size": 4,
        "max_new_tokens": 8,
    }
    return GRPOArmConfig(**(settings | overrides))


class Scripted(TokenResponder):
    """Answers with given texts (canonically tokenized) instead of sampling: turn t of every
    episode gets ``answers[t]`` (a callable of the env gives the expert's answer)."""

    def __init__(self, policy, answers, *, truncate=None):
        super().__init__(policy, max_new_tokens=64)
        self.answers = answers
        self.truncate = truncate
        self.envs = []

    def __call__(self, requests):
        self.envs = [request.env for request in requests]
        return super().__call__(requests)

    def sample(self, traces):
        out = []
        for trace, env in zip(traces, self.envs, strict=True):
            answer = self.answers[trace.turns]
            text = answer(env) if callable(answer) else answer
            ids = self.policy.tokenizer(text, add_special_tokens=False)["input_ids"]
            ids = ids[: self.truncate] if self.truncate else [*ids, self.closing_id]
            out.append((ids, [0.0] * len(ids)))
        return out


def runs(mask):
    """(value, start, end) of the runs of equal values in a 0/1 mask."""
    spans, start = [], 0
    for i in range(1, len(mask) + 1):
        if i == len(mask) or mask[i] != mask[start]:
            spans.append((mask[start], start, i))
            start = i
    return spans


def play(task_config, starts, responder):
    def make_env():
        return EpisodeEnv(make_task_env(task_config.task, **task_config.env_kwargs()), starts)

    return rollout(make_env, responder, len(starts), batch_size=len(starts), seed=0)


def expert(env):
    return env.expert_response()


def test_an_episode_is_the_rendered_chat_with_feedback_masked(policy):
    config = gp_config()
    starts = start_states(config)[:2]
    responder = Scripted(policy, ["I do not know", "{}", expert])
    episodes = play(config, starts, responder)
    output = episodes_to_rollout(episodes)
    tokenizer = policy.tokenizer
    for i, episode in enumerate(episodes):
        assert [t.reward for t in episode.turns] == output["turn_rewards"][i]
        assert output["episode_success"][i] and output["episode_turns"][i] == 3
        conversation = [{"role": "user", "content": episode.reset_info["prompt"]}]
        for t in episode.turns:
            conversation.append({"role": "assistant", "content": t.response.text})
            if t.info["prompt"] is not None:
                conversation.append({"role": "user", "content": t.info["prompt"]})
        sequence = output["prompt_ids"][i] + output["completion_ids"][i]
        rendered = tokenizer(
            policy.render(conversation, add_generation_prompt=False), add_special_tokens=False
        )["input_ids"]
        assert rendered[: len(sequence)] == sequence
        assert tokenizer.decode(rendered[len(sequence) :]).strip() == ""
        mask, completion = output["env_mask"][i], output["completion_ids"][i]
        spans = runs(mask)
        answers = [s for s in spans if s[0] == 1]
        inserted = [s for s in spans if s[0] == 0]
        assert [completion[a:b] for _, a, b in answers] == [
            t.response.response_ids.tolist() for t in episode.turns
        ]
        assert len(inserted) == 2  # exactly the two feedback turns, nothing else
        for (_, a, b), t in zip(inserted, episode.turns, strict=False):
            text = tokenizer.decode(completion[a:b], skip_special_tokens=True)
            assert t.info["prompt"] in text and text.replace(t.info["prompt"], "").strip() in {
                "user\n\nassistant",
                "user\nassistant",
            }


def test_a_truncated_answer_is_closed_by_an_inserted_end_of_turn(policy):
    config = gp_config(verify_iter=2)
    episodes = play(config, start_states(config)[:1], Scripted(policy, ["abc"] * 2, truncate=2))
    output = episodes_to_rollout(episodes)
    completion, mask = output["completion_ids"][0], output["env_mask"][0]
    assert mask[:2] == [1, 1] and mask[2] == 0
    assert completion[2] == policy.tokenizer.eos_token_id
    assert sum(mask) == 4 and output["turn_rewards"][0] == [-3.0, -3.0]


def test_rollout_func_with_the_tiny_model_is_consistent(policy):
    config = gp_config(sampling_logprobs=True, max_new_tokens=10, temperature=0.7)
    dataset = build_prompt_dataset(config)
    prompts = [row["prompt"] for row in dataset for _ in range(config.num_generations)]
    model = policy.model
    trainer = SimpleNamespace(
        model=model,
        args=SimpleNamespace(
            off_policy_mask_threshold=None, steps_per_generation=1, gradient_accumulation_steps=1
        ),
        state=SimpleNamespace(global_step=0),
        accelerator=SimpleNamespace(
            unwrap_model=lambda m: m, process_index=0, num_processes=1, device=torch.device("cpu")
        ),
    )
    output = make_rollout_func(config, policy)(prompts, trainer)
    assert len(output["prompt_ids"]) == len(prompts)
    tokenizer = policy.tokenizer
    env = make_task_env("gp-l", **config.env_kwargs())
    for i, prompt in enumerate(prompts):
        start = prompt[0][EPISODE_KEY]
        completion, mask = output["completion_ids"][i], output["env_mask"][i]
        assert len(mask) == len(completion) == len(output["logprobs"][i])
        # replaying the sampled answers gives the env's verdicts and feedback turns
        _, info = env.reset(seed=start["seed"])
        assert tokenizer.decode(output["prompt_ids"][i]).count(info["prompt"]) == 1
        spans = runs(mask)
        answers = [completion[a:b] for v, a, b in spans if v == 1]
        inserted = [completion[a:b] for v, a, b in spans if v == 0]
        assert len(answers) == output["episode_turns"][i] == len(output["turn_rewards"][i])
        rewards = []
        for k, ids in enumerate(answers):
            _, reward, terminated, truncated, info = env.step(
                tokenizer.decode(ids, skip_special_tokens=True)
            )
            rewards.append(reward)
            if k < len(inserted):
                feedback = tokenizer.decode(inserted[k], skip_special_tokens=True)
                assert info["prompt"].startswith(FEEDBACK_PREFIX) and info["prompt"] in feedback
        assert rewards == output["turn_rewards"][i] and (terminated or truncated)
        # sampled tokens: their log-probs are the model's, in exactly this context
        sequence = torch.tensor([output["prompt_ids"][i] + completion])
        with torch.no_grad():
            logits = model(sequence).logits[0, len(output["prompt_ids"][i]) - 1 : -1]
        expected = (logits / config.temperature).log_softmax(-1)
        expected = expected.gather(1, torch.tensor(completion)[:, None])[:, 0]
        sampled = torch.tensor(mask).bool()
        got = torch.tensor(output["logprobs"][i])
        torch.testing.assert_close(got[sampled], expected[sampled], atol=1e-4, rtol=1e-4)
        assert (got[~sampled] == 0).all()


def test_virl_points_are_single_point_episodes(policy):
    config = GRPOArmConfig(task="virl-l", prompt="compact", n_prompts=3, verify_iter=2)
    starts = start_states(config)
    assert starts == [StartState(config.data_seed, point) for point in range(3)]
    env = make_task_env("virl-l", **config.env_kwargs())
    _, info = env.reset(seed=config.data_seed)
    for _ in range(2):
        _, _, _, _, info = env.step(env.expert_response())
    _, wrapped_info = EpisodeEnv(make_task_env("virl-l", **config.env_kwargs()), starts).reset(
        seed=2
    )
    assert wrapped_info["prompt"] == info["prompt"]

    solved = episodes_to_rollout(play(config, starts, Scripted(policy, [expert])))
    assert solved["episode_success"] == [True] * 3 and solved["episode_turns"] == [1] * 3
    revised = episodes_to_rollout(play(config, starts, Scripted(policy, ["go", expert])))
    assert revised["episode_success"] == [True] * 3 and revised["episode_turns"] == [2] * 3
    failed = episodes_to_rollout(play(config, starts, Scripted(policy, ["go"] * 3)))
    assert failed["episode_success"] == [False] * 3
    assert failed["episode_turns"] == [3] * 3  # two graded tries, then V-IRL's ungraded step limit
    assert failed["turn_rewards"][0][-1] == -1.0


def test_episode_reward_definitions():
    assert episode_return([-1.0, 5.0], 0.9) == pytest.approx(3.5)
    reward = EpisodeReward("return", gamma=0.9)
    logged = {}
    values = reward(
        [None, None],
        turn_rewards=[[5.0], [-1.0, 5.0]],
        episode_success=[True, True],
        log_metric=logged.__setitem__,
    )
    assert values == pytest.approx([5.0, 3.5])
    assert logged["episode/success"] == 1.0 and logged["episode/turns"] == 1.5
    success = EpisodeReward("success")([None] * 2, turn_rewards=[[5], [-3]], episode_success=[1, 0])
    assert success == [1.0, 0.0]
    with pytest.raises(ValueError, match="num_generations"):
        GRPOArmConfig(num_generations=1)
    with pytest.raises(ValueError, match="temperature"):
        GRPOArmConfig(temperature=0)
    with pytest.raises(ValueError, match="unknown reward"):
        GRPOArmConfig(reward="sum")


def even_token_bonus(completion_ids, **kwargs):
    """A scripted reward landscape: the share of even token ids. A random tiny model never writes a
    parsable answer, so its episode rewards never differ within a group."""
    return [sum(t % 2 == 0 for t in ids) / len(ids) for ids in completion_ids]


def test_grpo_trains_on_tiny_gp_l(tmp_path):
    policy = load_policy(ModelConfig(name_or_path="tiny-text", seed=0, tiny=SMALL))
    before = {k: v.detach().clone() for k, v in policy.model.named_parameters()}
    config = gp_config(
        max_steps=2, learning_rate=1e-3, verify_iter=2, eval_every=2, eval_episodes=2
    )
    result = train_grpo(
        config, policy, output=tmp_path, name="grpo", reward_funcs=[even_token_bonus]
    )
    after = dict(result.policy.model.named_parameters())
    assert any(not torch.equal(before[k], after[k]) for k in before)
    records = read_metric_records(result.run.path)
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for record in steps:
        assert math.isfinite(record["loss"]) and record["grad_norm"] > 0
        assert record["episode/success"] == 0.0 and record["episode/turns"] == 2.0
        assert record["rewards/episode_reward/mean"] == pytest.approx(-3 - 0.9 * 3)
        assert record["gflops"] > 0 and record["tokens"] > 0 and record["env_tokens"] > 0
    assert steps[1]["gflops"] > steps[0]["gflops"]
    assert records[-1]["final"] and records[-1]["episodes"] == 8
    evaluations = [r for r in records if "eval_split" in r]
    assert [(r["step"], r["eval_split"], r["success_n"]) for r in evaluations] == [
        (2, "id", 2),
        (2, "rule_ood", 2),
    ]
    reloaded = load_policy(ModelConfig(name_or_path=str(result.final_dir)))
    assert torch.equal(
        dict(reloaded.model.named_parameters())["model.embed_tokens.weight"],
        after["model.embed_tokens.weight"],
    )


def test_grpo_raises_a_scripted_reward(tmp_path):
    """The adapter's loss path optimises the reward: with a landscape the tiny model can climb
    (even token ids), ten steps take the reward from about a half to near one."""
    policy = load_policy(ModelConfig(name_or_path="tiny-text", seed=1, tiny=SMALL))
    config = gp_config(
        verify_iter=1, n_prompts=16, batch_size=8, num_generations=4, learning_rate=3e-2
    )
    config.max_steps = 10
    result = train_grpo(config, policy, output=tmp_path, name="up", reward_funcs=[even_token_bonus])
    rewards = [
        r["rewards/even_token_bonus/mean"]
        for r in read_metric_records(result.run.path)
        if "loss" in r
    ]
    assert len(rewards) == 10
    assert sum(rewards[-2:]) / 2 > sum(rewards[:2]) / 2 + 0.2


class Crash(TrainerCallback):
    """Kills training at the end of a step, as a SIGKILL would (but in-process)."""

    def __init__(self, at_step):
        self.at_step = at_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at_step:
            raise KeyboardInterrupt("simulated kill")


def test_a_killed_grpo_run_resumes_to_the_same_weights_and_counts(tmp_path):
    config = gp_config(max_steps=3, save_every=1, learning_rate=1e-2, verify_iter=2)

    def train(name, **kwargs):
        policy = load_policy(ModelConfig(name_or_path="tiny-text", seed=0, tiny=SMALL))
        return train_grpo(
            config, policy, output=tmp_path, name=name, reward_funcs=[even_token_bonus], **kwargs
        )

    whole = train("whole")
    with pytest.raises(KeyboardInterrupt):
        train("killed", callbacks=[Crash(at_step=2)])
    resumed = train("killed")
    assert resumed.run.resumed
    for key, value in dict(whole.policy.model.named_parameters()).items():
        torch.testing.assert_close(dict(resumed.policy.model.named_parameters())[key], value)
    final = [read_metric_records(r.run.path)[-1] for r in (whole, resumed)]
    assert final[0]["gflops"] == final[1]["gflops"] and final[0]["episodes"] == final[1]["episodes"]
    steps = [
        [r["step"] for r in read_metric_records(x.run.path) if "loss" in r]
        for x in (whole, resumed)
    ]
    assert steps == [[1, 2, 3], [1, 2, 3]]


def test_grpo_trains_a_tiny_vlm_on_gp_vl(tmp_path):
    policy = load_policy(ModelConfig(name_or_path="tiny-vlm", seed=0))
    before = {k: v.detach().clone() for k, v in policy.model.named_parameters()}
    config = gp_config(task="gp-vl", max_steps=1, verify_iter=2, learning_rate=1e-3, image_size=56)
    dataset = build_prompt_dataset(config)
    assert dataset[0]["image"].size[0] == 56
    result = train_grpo(config, policy, output=tmp_path, name="vl", reward_funcs=[even_token_bonus])
    after = dict(result.policy.model.named_parameters())
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("vision_tower" in k for k in changed)  # the image reached TRL's loss pass
    record = next(r for r in read_metric_records(result.run.path) if "loss" in r)
    assert math.isfinite(record["loss"]) and record["episode/turns"] == 2.0


def test_the_shipped_tiny_config_loads_with_overrides():
    import sftvrl
    from sftvrl.config import load_config
    from sftvrl.train.grpo import GRPOExperiment

    path = Path(sftvrl.__file__).parent / "configs" / "tiny" / "gp_l_grpo.yaml"
    experiment = load_config(GRPOExperiment, path, ["grpo.max_steps=3", "grpo.reward=success"])
    assert experiment.grpo.task == "gp-l" and experiment.grpo.max_steps == 3
    assert experiment.grpo.reward == "success" and experiment.name == "gp_l_grpo"
