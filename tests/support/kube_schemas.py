"""JSON schemas for kubeconform, taken from a running API server's OpenAPI v3 documents.

kubeconform reads one JSON schema file per kind, found by a path template; its default source is a
schema repository on the internet, built from Kubernetes' OpenAPI by a script. Here the source is
the API server the tests start, at the pinned version: every kind it serves gets a file
<dir>/<group>/<version>/<kind>[-strict].json ("v1/v1" for the core group, kubeconform's {{.Group}}
of apiVersion "v1") holding the kind's schema and, under "definitions", every schema of its
group-version document that it may reference. The strict variant forbids properties the schema
does not name (a misspelt field), which the plain one lets through.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Callable

REF_PREFIX = "#/components/schemas/"
TEMPLATE = "{{ .Group }}/{{ .ResourceAPIVersion }}/{{ .ResourceKind }}{{ .StrictSuffix }}.json"


def _rewrite(node, strict: bool):
    if isinstance(node, dict):
        out = {k: _rewrite(v, strict) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            out["$ref"] = "#/definitions/" + ref[len(REF_PREFIX):]
        if strict and "properties" in out and "additionalProperties" not in out \
                and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_rewrite(v, strict) for v in node]
    return node


def write_schemas(fetch: Callable[[str], dict], target: Path) -> int:
    """fetch(path) -> JSON of an API server path. Returns the number of kinds written."""
    index = fetch("/openapi/v3")
    count = 0
    for path in sorted(index["paths"]):
        if not (path == "api/v1" or (path.startswith("apis/") and path.count("/") == 2)):
            continue
        doc = fetch("/openapi/v3/" + path)
        components = doc.get("components", {}).get("schemas", {})
        for strict in (False, True):
            definitions = _rewrite(copy.deepcopy(components), strict)
            for name, schema in components.items():
                for gvk in schema.get("x-kubernetes-group-version-kind", []):
                    group = gvk["group"] or "v1"
                    version, kind = gvk["version"], gvk["kind"].lower()
                    if path == "api/v1" and gvk["group"]:
                        continue
                    file = target / group / version / f"{kind}{'-strict' if strict else ''}.json"
                    if file.exists():
                        continue
                    file.parent.mkdir(parents=True, exist_ok=True)
                    body = dict(definitions[name])
                    body["definitions"] = definitions
                    file.write_text(json.dumps(body))
                    count += not strict
    return count
