"""The flag checks of `genview generate` that need no model: run before torch is imported, so they answer at once.

(`--param` values are checked before these, against the model's declaration: `typed_params`.)

What can only be known by loading the model (a checkpoint's format, a remote source's contents) is
checked where it is loaded; this module imports neither torch nor pyarrow.
"""

from __future__ import annotations

import os
from typing import Any

from genview.generator.registry import weights_required

#: List-file suffixes a source may have (genview.datastore.sources.LIST_FILE_SUFFIXES; a test keeps them equal:
#: importing the datastore here would load pyarrow, a second of start-up for a flag error).
LIST_FILE_SUFFIXES = (".txt", ".csv", ".parquet")


def source_problem(source: str) -> str | None:
    """Why a local source cannot be listed (missing; neither a folder nor a list file); None if it can or is remote."""
    if "://" in source and not source.startswith("file://"):
        return None  # an object store: listed (and checked) by the job itself
    path = source.removeprefix("file://")
    if not os.path.exists(path):
        return f"source {source!r} does not exist"
    if not os.path.isdir(path) and not path.lower().endswith(LIST_FILE_SUFFIXES):
        return f"source {source!r} is neither a folder nor a list file ({', '.join(LIST_FILE_SUFFIXES)})"
    return None


def flag_problems(given: dict[str, Any]) -> list[str]:
    """Every problem of the job's fields (flags over recipe) visible without loading the model, one line each.

    Checked on the plain fields, before the spec model is built: a flag error costs no pydantic either.
    """
    problems = []
    if not given.get("weights"):
        problems.append(weights_required(given["model"]))
    source = source_problem(given["source"])
    if source:
        problems.append(source)
    return problems
