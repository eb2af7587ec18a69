import pytest
from ie_env.agents import agent_names, make_agent, make_config
from ie_env.agents.registry import GPAgentConfig


def test_registry_names():
    assert set(agent_names()) >= {
        "random", "labels", "labels_half", "oracle", "softmax_gp", "ucb", "thompson", "epsilon_greedy",
        "ppo", "zucb",
    }  # fmt: skip


def test_unknown_agent_names_the_registered_ones():
    with pytest.raises(ValueError, match="unknown agent 'nope'.*softmax_gp"):
        make_agent("nope")


def test_unknown_kwarg_names_the_allowed_ones():
    with pytest.raises(ValueError, match="no argument.*tau.*allowed: length_scale"):
        make_agent("softmax_gp", tau=1.0)
    with pytest.raises(ValueError, match=r"allowed: \(none\)"):
        make_agent("random", seed=1)


def test_configs_validate_their_fields():
    with pytest.raises(ValueError, match="SoftmaxGPConfig.length_scale"):
        make_config("softmax_gp", length_scale=-1.0)
    with pytest.raises(ValueError, match="UCBConfig.beta"):
        make_config("ucb", beta=-0.1)
    with pytest.raises(ValueError, match="EpsilonGreedyConfig.epsilon"):
        make_config("epsilon_greedy", epsilon=2)
    with pytest.raises(ValueError, match="PPOConfig.actions"):
        make_config("ppo", actions="discrete")
    with pytest.raises(ValueError, match="GPAgentConfig.standardize"):
        GPAgentConfig(standardize="yes")
    assert make_config("zucb").standardize is True and make_config("zucb").length_scale == 0.5
    assert make_config("labels_half").label_share == 0.5


def test_agents_needing_the_env_say_so():
    with pytest.raises(ValueError, match="needs the env"):
        make_agent("oracle")
    assert make_agent("softmax_gp", length_scale=0.5).gp_config.length_scale == 0.5
