"""The household as it travels: ``guardian export`` writes it as YAML, ``guardian
import`` reads such a document back, checked as the config is (problems as FILE:LINE)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import yaml

from ..errors import ConfigError
from ..policy.household import Household, household_from_config, household_to_dict


def export_yaml(household: Household) -> str:
    body = yaml.safe_dump({"household": household_to_dict(household)}, sort_keys=False, allow_unicode=True,
                          default_flow_style=False, width=100)
    return "# Guardian household: 'guardian import FILE' reads this back.\n" + body



def parse_household(
    text: str,
    filename: str,
    templates: Mapping[str, Mapping[str, Any]] | None,
    categories: Collection[str] | None,
    services: Collection[str] | None,
) -> Household:
    """The ``household:`` section of a YAML document, with the config's checks."""
    from .. import config

    settings = config.parse(text, filename)  # ConfigError with FILE:LINE
    if settings.household is None:
        raise ConfigError([f"{filename}:1: no household: section to import"])
    household, problems = household_from_config(settings.household, templates, categories=categories,
                                                services=services)
    if problems:
        raise ConfigError([f"{filename}:{settings.household_line}: {problem}" for problem in problems])
    return household

