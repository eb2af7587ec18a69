"""ie_env: Internet Explorer (Li et al., ICML 2023) as a Gymnasium environment."""

__version__ = "0.1.0"
