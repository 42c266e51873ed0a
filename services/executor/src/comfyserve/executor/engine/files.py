"""Deleting a job's files from ComfyUI's input/output/temp folders."""

from dataclasses import dataclass, field
from pathlib import Path

import structlog

from comfyserve.executor.engine.events import OutputRef

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class JobFiles:
    """What one job left in ComfyUI: names returned by `upload_input` and the
    refs of its outputs and previews."""

    inputs: tuple[str, ...] = ()
    outputs: tuple[OutputRef, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class ComfyDirs:
    input: Path
    output: Path
    temp: Path

    def base_for(self, folder_type: str) -> Path | None:
        return {"input": self.input, "output": self.output, "temp": self.temp}.get(
            folder_type
        )


def _inside(base: Path, relative: str) -> Path | None:
    """`base/relative`, or None when it would escape `base`."""
    root = base.resolve()
    target = (root / relative).resolve()
    return target if target.is_relative_to(root) and target != root else None


def _remove(base: Path, relative: str) -> None:
    target = _inside(base, relative)
    if target is None:
        log.warning("executor.engine.cleanup_refused", folder=str(base))
        return
    target.unlink(missing_ok=True)
    # Drop the job's now-empty subfolders, never the base folder itself.
    parent = target.parent
    root = base.resolve()
    while parent != root and parent.is_relative_to(root):
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent


def delete_job_files(dirs: ComfyDirs, files: JobFiles) -> None:
    for name in files.inputs:
        _remove(dirs.input, name)
    for ref in files.outputs:
        base = dirs.base_for(ref.folder_type)
        if base is not None:
            name = f"{ref.subfolder}/{ref.filename}" if ref.subfolder else ref.filename
            _remove(base, name)
