"""Compatibility alias: the recipe schema and loader now live in the `urrlkit.config` package.

Kept so that `from urrlkit.recipe import load, Recipe, …` in user code keeps working; new code imports
`urrlkit.config`. A star import of its `__all__`, so the alias never falls behind a new config class.
"""

from urrlkit.config import *  # noqa: F403
from urrlkit.config import __all__ as __all__
