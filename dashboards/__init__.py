"""The HITL Grafana dashboards as code (grafana-foundation-sdk).

`python -m generate` writes grafana/dashboards/<uid>.json from render_all(), which Grafana loads
through grafana/provisioning/dashboards/dashboards.yaml; `python -m generate --check` fails when
the committed JSON differs from what the code generates (CI runs it: tests/test_generated.py).
`dashboards.queries` lists every query the dashboards and datasources run, for the live tests.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT_DIR = ROOT / "grafana" / "dashboards"
DATASOURCES_FILE = ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yaml"


def render_all() -> dict[str, str]:
    """{file name: JSON text} of every dashboard, in a stable order."""
    from dashboards import business, overview, performance, slo
    from dashboards.panels import to_json

    rendered = {}
    for module in (overview, performance, business, slo):
        builder = module.build()
        uid = builder.build().uid
        rendered[f"{uid}.json"] = to_json(builder)
    return rendered
