"""A webhook receiver for trying deliveries out: verify each, print its event.

    python tools/webhook_receiver.py --port 9000 --secret whsec_...

listens on 127.0.0.1:9000 and verifies every POST with the `standardwebhooks`
package, an implementation of Standard Webhooks independent of ours, against
each secret given (`--secret` repeated, or `WEBHOOK_SECRETS` comma-separated:
the tenant's from `GET /webhooks/secret`, an endpoint's from its creation).
A verified delivery is answered 204 and printed; any other request is
answered 400 with why. The end-to-end tests run the same `Receiver`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

_MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Received:
    """A verified delivery: its headers, body, and the secret that verified it."""

    webhook_id: str
    timestamp: str
    signatures: tuple[str, ...]
    body: dict[str, Any]
    secret_index: int
    path: str
    # As they came, so a caller can verify them again with other secrets.
    headers: dict[str, str]
    raw: bytes


@dataclass
class Receiver:
    """Verifies deliveries against `secrets`; keeps what it got, in order."""

    secrets: Sequence[str]
    out: IO[str] | None = None
    received: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def verify(self, path: str, headers: dict[str, str], body: bytes) -> Received:
        """The delivery, if one of the secrets signed it; raises otherwise."""
        for index, secret in enumerate(self.secrets):
            try:
                payload = Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            return Received(
                webhook_id=headers["webhook-id"],
                timestamp=headers["webhook-timestamp"],
                signatures=tuple(headers["webhook-signature"].split(" ")),
                body=payload,
                secret_index=index,
                path=path,
                headers=headers,
                raw=body,
            )
        raise WebhookVerificationError("no secret verifies this request")

    def record(self, path: str, headers: dict[str, str], body: bytes) -> str | None:
        """Verify and keep one request; the refusal's reason, or None."""
        try:
            delivery = self.verify(path, headers, body)
        except (WebhookVerificationError, ValueError, KeyError) as error:
            with self._lock:
                self.refused.append(str(error))
            self._say(f"refused {path}: {error}\n")
            return str(error) or type(error).__name__
        with self._lock:
            self.received.append(delivery)
        job = delivery.body.get("data") or {}
        self._say(
            f"verified {delivery.webhook_id} (secret #{delivery.secret_index + 1}) "
            f"{delivery.body.get('type')} execution={job.get('execution_id')} "
            f"status={job.get('status')}\n"
            f"{json.dumps(delivery.body, indent=2)}\n"
        )
        return None

    def _say(self, text: str) -> None:
        if self.out is not None:
            self.out.write(text)
            self.out.flush()


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY_BYTES:
                self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"too large")
                return
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            refused = receiver.record(self.path, headers, body)
            if refused is None:
                self._answer(HTTPStatus.NO_CONTENT, b"")
            else:
                self._answer(HTTPStatus.BAD_REQUEST, refused.encode())

        def _answer(self, status: HTTPStatus, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the receiver says what it verified instead."""

    return Handler


@contextmanager
def serving(receiver: Receiver, port: int = 0) -> Iterator[str]:
    """Serve `receiver` on 127.0.0.1:`port` (0: a free one), in a thread;
    yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(receiver))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        help="a whsec_ secret to verify with; repeat for several",
    )
    args = parser.parse_args(argv)
    from_env = os.environ.get("WEBHOOK_SECRETS", "")
    secrets = [*args.secret, *(s.strip() for s in from_env.split(",") if s.strip())]
    if not secrets:
        parser.error("give at least one --secret (or WEBHOOK_SECRETS)")
    receiver = Receiver(secrets, out=sys.stdout)
    with serving(receiver, args.port) as url:
        sys.stdout.write(f"receiving webhooks at {url}/ (Ctrl-C stops)\n")
        sys.stdout.flush()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            sys.stdout.write("\nstopped\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
