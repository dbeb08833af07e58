"""Which pip extra of genview installs which import, so that a missing module's error says what to install."""

from __future__ import annotations

#: Top-level import name -> the extra that installs it (pyproject.toml; tests/cli/test_extras.py keeps them in step).
EXTRA_OF_MODULE: dict[str, str] = {
    **dict.fromkeys(("fastapi", "uvicorn", "sqlalchemy", "alembic", "httpx", "psutil", "jinja2"), "api"),
    "psycopg": "postgres",
    "ray": "ray",
    **dict.fromkeys(("s3fs", "aiobotocore", "botocore"), "s3"),
    **dict.fromkeys(("torchmetrics", "torch_fidelity", "open_clip"), "quality"),
    **dict.fromkeys(("mkdocs", "material"), "docs"),
}


def missing_module(exc: ImportError) -> str | None:
    """The top-level name of the module whose import failed, following `raise ImportError(...) from exc` chains."""
    seen: ImportError | None = exc
    while seen is not None:
        if seen.name:
            return seen.name.split(".")[0]
        seen = seen.__cause__ if isinstance(seen.__cause__, ImportError) else None
    return None


def install_hint(exc: ImportError) -> str:
    """What to install for this failed import: the extra when one provides it, else genview's base install."""
    name = missing_module(exc)
    extra = EXTRA_OF_MODULE.get(name or "")
    if extra:
        return f"this command needs the {extra} extra: pip install 'genview[{extra}]'"
    return ("this command needs genview's model dependencies (torch, torchvision, diffusers, ...): "
            "pip install genview (docs/install.md: the torch build for your machine)")


def describe_import_error(exc: ImportError) -> str:
    """One line for a failed import: the error, then what to install (unless the error already says)."""
    text = str(exc)
    return text if "pip install" in text else f"{text}; {install_hint(exc)}"
