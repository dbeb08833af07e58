"""Exclusion rules over stored per-class metrics, e.g. DA IC-GAN's ``fid>=150``."""

from __future__ import annotations

import dataclasses
import operator
import re
from typing import Any, Callable

from genview.quality.tables import CLASS_METRICS, METRIC_ALIASES

#: DA IC-GAN (seed 004, App. B.2): classes with FID >= 150 are poorly modelled and get no generated views.
DA_ICGAN_RULE = "fid>=150"
#: Names a user may give instead of a rule.
NAMED_RULES = {"da-icgan": DA_ICGAN_RULE}
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq, "!=": operator.ne,
}
_RULE = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|==|!=|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclasses.dataclass(frozen=True)
class Rule:
    """`metric op threshold`: a class matching it is excluded."""

    metric: str
    op: str
    threshold: float

    def matches(self, value: float | None) -> bool:
        """True when a class's value meets the rule; a missing value (NaN/None) never does."""
        if value is None or value != value:
            return False
        return _OPS[self.op](float(value), self.threshold)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


def parse_rules(text: str) -> list[Rule]:
    """Parse `fid>=150`, `da-icgan`, or several joined by commas (a class matching any is excluded)."""
    rules = []
    for part in str(text).split(","):
        part = NAMED_RULES.get(part.strip(), part)
        match = _RULE.match(part)
        if not match:
            raise ValueError(
                f"exclude rule {part.strip()!r} is not METRIC OP NUMBER (e.g. fid>=150) or a named rule "
                f"({', '.join(NAMED_RULES)}); metrics: {', '.join(CLASS_METRICS)}"
            )
        metric, op, value = match.groups()
        metric = METRIC_ALIASES.get(metric, metric)  # rules written for stores measured before the rename
        if metric not in CLASS_METRICS:
            raise ValueError(f"exclude rule {part.strip()!r}: unknown metric {metric!r}; metrics: {', '.join(CLASS_METRICS)}")
        try:
            threshold = float(value)
        except ValueError:
            raise ValueError(f"exclude rule {part.strip()!r}: {value!r} is not a number") from None
        rules.append(Rule(metric, op, threshold))
    return rules


def excluded_labels(class_rows: list[dict[str, Any]], rules: list[Rule]) -> frozenset[str]:
    """Return the labels of the classes any rule matches."""
    return frozenset(row["label"] for row in class_rows if any(rule.matches(row.get(rule.metric)) for rule in rules))
