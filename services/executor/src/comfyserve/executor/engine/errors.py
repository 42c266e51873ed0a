class EngineError(Exception):
    """Base error of the ComfyUI engine adapter."""


class EngineUnavailable(EngineError):
    """ComfyUI could not be reached; retrying on a healthy engine may succeed."""


class EngineRestarted(EngineUnavailable):
    """The engine was restarted or stopped while the prompt waited or ran: the
    prompt is gone, and a restart for it has already happened."""


class EngineTimeout(EngineError):
    """The caller's deadline passed before the prompt finished."""


class EngineCrashed(EngineError):
    """The managed ComfyUI process exited while it was needed."""

    def __init__(self, returncode: int | None) -> None:
        super().__init__(f"ComfyUI exited with code {returncode}")
        self.returncode = returncode


class EngineStartFailed(EngineError):
    """The managed ComfyUI did not become ready."""


class RestartUnsupported(EngineError):
    """The engine does not own its ComfyUI process, so it cannot restart it."""


class OutputNotFound(EngineError):
    """ComfyUI does not serve the requested output file."""


class UnexpectedResponse(EngineError):
    """ComfyUI answered with a status or body the adapter does not understand."""

    def __init__(self, route: str, status: int) -> None:
        super().__init__(f"{route} answered HTTP {status}")
        self.route = route
        self.status = status
