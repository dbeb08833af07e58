"""Host paths as clients see them: relative to the service folder, or starting with a root as configured.

The service resolves every path it is given to a canonical absolute one (realpath, relative paths
taken from the service folder) and runs jobs with those. Shown back as they are, they would tell a
client where the service lives (its folder, the targets of symlinked roots). Responses show instead:

- a path inside the service folder relative to it (`stores/x`), the spelling a client submits;
- a path inside a root outside that folder starting with the root as the operator wrote it in the
  settings (`/data/imagenet/train`, `~/weights/icgan`), the name clients are given to use;
- URLs (s3://...) unchanged; anything else only by its last component.
"""

from __future__ import annotations

import os
import re
from typing import Any

from genview.api.paths import canonical_root, split_url
from genview.api.settings import Settings
from genview.generator.registry import path_params

#: The spec fields that hold a path (path-valued params are declared per model).
SPEC_PATH_FIELDS = ("source", "out", "weights", "encoder_weights")
OUTSIDE = "(outside the service's roots)"


class PathDisplay:
    """Rewrites canonical host paths into the form clients see (see the module doc)."""

    def __init__(self, settings: Settings):
        configured = [*settings.source_roots, *settings.output_roots, *settings.model_roots]
        for policy in settings.tokens.values():
            configured += [*(policy.source_roots or []), *(policy.output_roots or [])]
        prefixes: dict[str, str] = {}
        for root in configured:
            scheme = split_url(root)
            if scheme is not None and scheme[0] != "file":
                continue  # URLs are shown as they are
            prefixes.setdefault(canonical_root(root, settings.base_dir), root.rstrip("/") or "/")
        if settings.jobs_dir:
            prefixes.setdefault(settings.resolved_jobs_dir, settings.jobs_dir.rstrip("/"))
        prefixes[settings.base_dir] = ""  # the service folder itself: relative paths
        # Longest first: a root inside another (or inside the service folder) wins.
        self.prefixes = sorted(prefixes.items(), key=lambda item: len(item[0]), reverse=True)
        self._patterns = [
            (re.compile(re.escape(canonical) + r"(/[^\s'\"]*)?(?![^/\s'\"\]\),:;])"), shown)
            for canonical, shown in self.prefixes if canonical != "/"
        ]

    @staticmethod
    def _join(shown: str, rest: str) -> str:
        rest = rest.lstrip("/")
        if not shown:
            return rest or "."
        return f"{shown.rstrip('/')}/{rest}" if rest else shown

    def path(self, value: Any) -> Any:
        """One path value as a client sees it (non-strings and URLs unchanged)."""
        if not isinstance(value, str) or not value:
            return value
        scheme = split_url(value)
        if scheme is not None and scheme[0] != "file":
            return value
        local = scheme[1] if scheme is not None else value
        if not os.path.isabs(local):
            return value  # already relative: as the client gave it
        for canonical, shown in self.prefixes:
            if local == canonical or local.startswith(canonical.rstrip("/") + "/"):
                return self._join(shown, local[len(canonical):])
        return f"{OUTSIDE}/{os.path.basename(local.rstrip('/'))}"

    def text(self, message: str | None) -> str | None:
        """A message (an error, a log) with every known host prefix rewritten as `path` would."""
        if not message:
            return message
        for pattern, shown in self._patterns:
            message = pattern.sub(lambda match, shown=shown: self._join(shown, match.group(1) or ""), message)
        return message

    def spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A job spec (as stored) with its path fields and path-valued params shown as clients see them."""
        shown = dict(spec)
        for field in SPEC_PATH_FIELDS:
            if field in shown:
                shown[field] = self.path(shown[field])
        model = shown.get("model")
        params = shown.get("params")
        if isinstance(params, dict) and isinstance(model, str):
            try:
                declared = path_params(model)
            except (KeyError, ValueError):
                declared = []
            shown["params"] = {name: self.path(value) if name in declared else value for name, value in params.items()}
        return shown
