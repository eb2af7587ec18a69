"""Query policies for the Internet Explorer env (installed as ``ie_env.agents``).

``make_agent(name, env, **kwargs)`` builds one by name (see :func:`agent_names`);
``run_episode(agent, env, agent_seed=...)`` runs a non-SB3 agent for one episode.
"""

from ie_env.agents.base import Agent, ConceptSpace
from ie_env.agents.loop import StepRecord, relevant_fraction, relevant_images, run_episode
from ie_env.agents.registry import agent_names, make_agent, make_config, report_name

__all__ = [
    "Agent",
    "ConceptSpace",
    "StepRecord",
    "agent_names",
    "make_agent",
    "make_config",
    "relevant_fraction",
    "relevant_images",
    "report_name",
    "run_episode",
]
