"""Check the Helm chart offline: lint, render every values scenario, and validate
the rendered manifests against the Kubernetes schemas.

    python -m infra.chart check    # what `make chart` and CI run
    python -m infra.chart helm     # install helm (cached) and print its path

helm is built with `go install` into the download cache, as versitygw is; see
deploy/helm/README.md for why its version is the one below.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import yaml

from infra.stack import LOCAL, ROOT, go_install

HELM_VERSION = "v3.21.4"
# The cluster version the chart is rendered for and validated against; the
# chart's kubeVersion floor (gRPC probes) is older.
KUBE_VERSION = "1.34.0"
CHART = ROOT / "deploy" / "helm" / "comfyserve"
PRODUCTION_VALUES = ROOT / "deploy" / "helm" / "values-production.yaml"
# Each scenario: the values files and `--set`s rendered together.
SCENARIOS: dict[str, tuple[tuple[Path, ...], tuple[str, ...]]] = {
    "default": ((), ()),
    "production": ((PRODUCTION_VALUES,), ()),
}
# Custom resources whose CRDs kubernetes-validate carries no schema for: they
# are skipped by name, so an unknown kind that is not listed here fails.
CUSTOM_KINDS = frozenset({"ScaledObject", "ServiceMonitor"})

Manifest = dict[str, Any]

log = logging.getLogger("chart")


class ChartError(Exception):
    """helm refused the chart, or a rendered manifest is invalid."""


def helm() -> Path:
    binary = LOCAL / "bin" / "helm"
    go_install("helm.sh/helm/v3/cmd/helm", HELM_VERSION, binary)
    return binary


def _helm(*args: str) -> str:
    proc = subprocess.run(
        [str(helm()), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ChartError(f"helm {args[0]} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def _value_args(values: Sequence[Path], sets: Sequence[str]) -> list[str]:
    args = ["--kube-version", KUBE_VERSION]
    for path in values:
        args += ["--values", str(path)]
    for assignment in sets:
        args += ["--set", assignment]
    return args


def lint(values: Sequence[Path] = (), sets: Sequence[str] = ()) -> None:
    _helm("lint", "--strict", str(CHART), *_value_args(values, sets))


def render(values: Sequence[Path] = (), sets: Sequence[str] = ()) -> list[Manifest]:
    """The chart's manifests, hooks included, as `helm install` would apply them."""
    out = _helm(
        "template",
        "comfyserve",
        str(CHART),
        "--namespace",
        "comfyserve",
        *_value_args(values, sets),
    )
    return [doc for doc in yaml.safe_load_all(out) if doc]


def validate(manifests: Sequence[Manifest]) -> list[str]:
    """Every problem of `manifests` against the schemas, one line each."""
    problems = []
    for manifest in manifests:
        name = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
        if manifest.get("kind") in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            problems.append(f"{name}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{name}: no schema for this kind")
    return problems


def check() -> None:
    for scenario, (values, sets) in SCENARIOS.items():
        lint(values, sets)
        manifests = render(values, sets)
        problems = validate(manifests)
        if problems:
            raise ChartError(f"{scenario}: invalid manifests:\n" + "\n".join(problems))
        log.info(
            "%s values: lint passed, %d manifests valid (not checked: %s)",
            scenario,
            len(manifests),
            ", ".join(sorted(CUSTOM_KINDS)),
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.chart")
    parser.add_argument("command", choices=["check", "helm"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        if args.command == "helm":
            sys.stdout.write(f"{helm()}\n")
        else:
            check()
    except ChartError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
