"""`genview recipes list / show NAME`: the named paper recipes and where their numbers come from."""

from __future__ import annotations

import argparse
import json

from genview.recipes import RECIPES, get_recipe, recipe_names


def add_parsers(sub, formatter) -> None:
    """Add the `recipes` verb and its sub-verbs."""
    p = sub.add_parser(
        "recipes",
        help="named settings that reproduce each paper's views (`generate --recipe NAME`)",
        description="A recipe is a named bundle of model, settings and K that reproduces one paper's views; "
        "`genview generate SOURCE --recipe NAME` resolves it to an ordinary spec (flags given explicitly override "
        "it) and records the name and the resolved values in the store's genview.json.",
        formatter_class=formatter,
    )
    verbs = p.add_subparsers(dest="recipes_verb", metavar="SUBCOMMAND", required=True)
    q = verbs.add_parser("list", help="every recipe with its paper, section and table", formatter_class=formatter)
    q.set_defaults(handler=run_list)
    q = verbs.add_parser("show", help="one recipe: its values, and where each is written", formatter_class=formatter)
    q.add_argument("name", choices=recipe_names(), metavar="NAME", help=f"one of {', '.join(recipe_names())}")
    q.add_argument("--json", action="store_true", help="print the spec fields the recipe sets, as JSON")
    q.set_defaults(handler=run_show)


def run_list(args: argparse.Namespace) -> int:
    """Print one block per recipe: name, summary, paper, section, table."""
    for recipe in RECIPES.values():
        print(f"{recipe.name}  ({recipe.model}, k={recipe.k})")
        print(f"    {recipe.summary}")
        print(f"    paper:   {recipe.paper}")
        print(f"    section: {recipe.section}")
        print(f"    table:   {recipe.table}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print one recipe in full (or its spec values as JSON)."""
    recipe = get_recipe(args.name)
    if args.json:
        print(json.dumps({"recipe": recipe.name, **recipe.values()}, indent=2))
    else:
        print(recipe.describe())
    return 0
