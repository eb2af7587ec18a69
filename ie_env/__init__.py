"""ie_env: Internet Explorer (Li et al., ICML 2023) as a Gymnasium environment.

Importing the package registers the env ids ``ie_env/InternetExplorer-v0`` (full loop: HTTP search,
downloads, SSL training) and ``ie_env/InternetExplorerFrozen-v0`` (fixed encoder, precomputed
rewards, in-process search).
"""

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

ENV_ID = "ie_env/InternetExplorer-v0"
FROZEN_ENV_ID = "ie_env/InternetExplorerFrozen-v0"

if ENV_ID not in registry:
    register(
        id=ENV_ID,
        entry_point="ie_env.env:InternetExplorerEnv",
        nondeterministic=True,
        kwargs={"frozen": False},
    )
if FROZEN_ENV_ID not in registry:
    register(id=FROZEN_ENV_ID, entry_point="ie_env.env:InternetExplorerEnv", kwargs={"frozen": True})
