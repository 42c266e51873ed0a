"""Regenerate the committed contract artefacts of libs/contracts.

- gRPC stubs and their mypy stubs from libs/contracts/proto into
  libs/contracts/src/comfyserve/contracts/pb (modules `comfyserve.contracts.pb.*`);
- a JSON Schema snapshot of every event class into libs/contracts/schemas, and
  of the webhook body into libs/contracts/schemas/webhooks.

`python tools/gen_contracts.py` rewrites them; `--check` regenerates into a
temporary folder and exits 1, listing the differences, when the committed
files are stale.
"""

from __future__ import annotations

import argparse
import difflib
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "libs" / "contracts"
PROTO_SOURCE = CONTRACTS / "proto" / "comfyserve"
# protoc sees the protos under this virtual path, so the generated modules are
# `comfyserve.contracts.pb.<service>.v1`, not the services' own packages.
PB_PACKAGE = Path("comfyserve", "contracts", "pb")
COMMITTED_PB = CONTRACTS / "src" / PB_PACKAGE
COMMITTED_SCHEMAS = CONTRACTS / "schemas"
COMMITTED_ASYNCAPI = CONTRACTS / "asyncapi"
IGNORED_PARTS = frozenset({"__pycache__"})
MAX_DIFF_LINES = 40


@dataclass(frozen=True)
class Output:
    """One generated folder and where it is committed."""

    generated: Path
    committed: Path


def _plugin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: install mypy-protobuf (uv sync)")
    return found


def generate_protos(src_out: Path) -> Path:
    """Run protoc; returns the generated `pb` folder."""
    well_known = resources.files("grpc_tools") / "_proto"
    protos = sorted(
        (PB_PACKAGE / p.relative_to(PROTO_SOURCE)).as_posix()
        for p in PROTO_SOURCE.rglob("*.proto")
    )
    src_out.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PB_PACKAGE.as_posix()}={PROTO_SOURCE}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={src_out}",
        f"--grpc_python_out={src_out}",
        f"--mypy_out={src_out}",
        f"--mypy_grpc_out={src_out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    pb = src_out / PB_PACKAGE
    for folder in [pb, *(d for d in pb.rglob("*") if d.is_dir())]:
        (folder / "__init__.py").touch()
    return pb


def generate_schemas(out: Path) -> Path:
    """Write one JSON Schema per event type, and the webhook body's; returns
    the folder."""
    from comfyserve.contracts.compat import event_json_schema
    from comfyserve.contracts.events import EVENT_CLASSES, event_type_of
    from comfyserve.contracts.webhooks import WebhookPayload

    schemas: dict[Path, dict[str, object]] = {
        Path(f"{event_type_of(cls)}.json"): event_json_schema(cls)
        for cls in EVENT_CLASSES
    }
    schemas[Path("webhooks", "payload.json")] = event_json_schema(WebhookPayload)
    for path, schema in schemas.items():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(schema, indent=2, sort_keys=True)
        (out / path).write_text(text + "\n")
    return out


def generate(tmp: Path) -> list[Output]:
    # A script's path is tools/ itself, where `tools` is not importable.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tools.asyncapi_docs import generate_asyncapi

    return [
        Output(generate_protos(tmp / "src"), COMMITTED_PB),
        Output(generate_schemas(tmp / "schemas"), COMMITTED_SCHEMAS),
        Output(generate_asyncapi(tmp / "asyncapi"), COMMITTED_ASYNCAPI),
    ]


def _files(folder: Path) -> dict[Path, bytes]:
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(folder): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not IGNORED_PARTS.intersection(p.parts)
    }


def differences(output: Output) -> list[str]:
    """Human-readable differences between the committed and generated folder."""
    fresh, committed = _files(output.generated), _files(output.committed)
    lines: list[str] = []
    for rel in sorted(fresh.keys() | committed.keys()):
        shown = (output.committed / rel).relative_to(ROOT).as_posix()
        if rel not in committed:
            lines.append(f"missing: {shown}")
        elif rel not in fresh:
            lines.append(f"not generated any more: {shown}")
        elif fresh[rel] != committed[rel]:
            lines.append(f"stale: {shown}")
            diff = difflib.unified_diff(
                committed[rel].decode(errors="replace").splitlines(),
                fresh[rel].decode(errors="replace").splitlines(),
                f"committed/{shown}",
                f"generated/{shown}",
                lineterm="",
            )
            lines.extend(f"    {line}" for line in list(diff)[:MAX_DIFF_LINES])
    return lines


def install(output: Output) -> None:
    shutil.rmtree(output.committed, ignore_errors=True)
    shutil.copytree(output.generated, output.committed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="fail, listing differences, when committed files are stale",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gen_contracts_") as tmp:
        outputs = generate(Path(tmp))
        if not args.check:
            for output in outputs:
                install(output)
            return 0
        problems = [line for output in outputs for line in differences(output)]
    if problems:
        sys.stderr.write("\n".join(problems) + "\n")
        sys.stderr.write("Generated contracts are stale: run `make gen`.\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
