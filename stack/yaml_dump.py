"""How the stack writes YAML it derives from the repository's files: keys in their original order,
multi-line strings (PromQL, ConfigMap files) as literal blocks, so a derived file reads like the
source."""

from __future__ import annotations

import yaml


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(obj) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=120)
