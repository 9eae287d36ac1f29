"""Phase-1 data building: recipes -> requests -> teacher trajectories -> filter -> GT renders
-> visual filter -> SFT / RL / benchmark split, and the funnel report.

This folder also holds the bundled example corpus and images of the local tools
(``corpus.jsonl``, ``images/``) and the demo recipe (``recipes/small.yaml``).

Modules: ``recipes`` (the recipe format), ``expander`` and ``dedup`` and ``requests``
(stage 1), ``trajectories`` (2), ``checks``/``judges``/``filter`` (3), ``render`` (4),
``visual_filter`` (5), ``split`` (6), ``pipeline`` (running stages in order), ``report``,
``commands`` (the CLI), and ``batch_adapter``, the only module that touches the batch package.
"""

from genevolve_graph.data.pipeline import BuildOptions, Services, build, parse_stages
from genevolve_graph.data.recipes import Recipe, RecipeError, bundled_recipe, load_recipe

__all__ = ["BuildOptions", "Recipe", "RecipeError", "Services", "build", "bundled_recipe", "load_recipe", "parse_stages"]
