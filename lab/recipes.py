"""Recipes: YAML files of ``TrainConfig`` settings. The shipped ones live in ``recipes/``; the user's own, saved
from the Train tab's form, in ``LAB_HOME/recipes``. Listing, finding and saving them, for the app and the CLI."""

from __future__ import annotations

from pathlib import Path

from lab.config import TrainConfig, load_yaml, to_yaml
from lab.errors import LabError
from lab.home import Home
from lab.names import check_name

SHIPPED = Path(__file__).resolve().parents[1] / "recipes"


def recipe_dirs(home: Home) -> list[Path]:
    """Shipped recipes, then the user's own."""
    return [SHIPPED, home.root / "recipes"]


def recipe_choices(home: Home) -> list[str]:
    """Every recipe's file name, sorted (a user's recipe of a shipped one's name is listed once: it wins)."""
    return sorted({p.name for d in recipe_dirs(home) for p in d.glob("*.yaml")})


def recipe_path(home: Home, name: str) -> Path:
    """A listed recipe's file (the user's own first); any other name, a folder or '../x' among them, is refused."""
    if name in recipe_choices(home):
        for directory in reversed(recipe_dirs(home)):
            if (directory / name).is_file():
                return directory / name
    raise LabError(f"No recipe named {name}; choose one from the list.")


def load_recipe(home: Home, name: str) -> TrainConfig:
    return load_yaml(str(recipe_path(home, name)))


def save_recipe(home: Home, name: str, cfg: TrainConfig) -> Path:
    """Write ``cfg`` as ``LAB_HOME/recipes/<name>.yaml``; a name any recipe has already is refused (no overwrite)."""
    name = check_name((name or "").strip().removesuffix(".yaml"), "Recipe name")
    if f"{name}.yaml" in recipe_choices(home):
        raise LabError(f"A recipe named {name}.yaml exists already; choose another name.")
    path = home.root / "recipes" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# python -m lab train {path} --wait\n" + to_yaml(cfg))
    load_yaml(str(path))  # what we write must load back
    return path
