"""Real receivers on loopback for the alert and stream tests: an HTTP server
that checks the signature and can go down and come back, and an SMTP server
(aiosmtpd) that keeps the messages it accepted."""

import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sphere_stats.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, valid_signature


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signed: bool  # the signature matched the receiver's secret


@dataclass
class WebhookReceiver:
    """POSTs to http://127.0.0.1:<port>/... are kept in `received` (only those
    answered 2xx). `status` is what it answers (set 503 to play a broken
    receiver); `stop()` closes the port (a receiver that is down) and
    `start()` opens the same port again."""

    secret: str
    status: int = 200
    received: list[Received] = field(default_factory=list)
    refused: int = 0  # requests answered with a non-2xx status
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> "WebhookReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                signed = valid_signature(receiver.secret, body, self.headers.get(SIGNATURE_HEADER))
                status = receiver.status if signed else 401
                if 200 <= status < 300:
                    receiver.received.append(Received(self.path, dict(self.headers), body, signed))
                else:
                    receiver.refused += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def deliveries(self) -> list[str]:
        return [r.headers.get(DELIVERY_HEADER, "") for r in self.received]


@dataclass
class SmtpReceiver:
    """A real SMTP server (aiosmtpd) on a free loopback port; `messages` are
    the parsed messages it accepted."""

    messages: list[Message] = field(default_factory=list)
    port: int = 0
    _controller: object = None

    def start(self) -> "SmtpReceiver":
        from aiosmtpd.controller import Controller

        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                receiver.messages.append(message_from_bytes(envelope.content))
                return "250 OK"

        # aiosmtpd connects to its own port to see it is up: it needs a
        # real port number, not 0.
        self.port = self.port or free_port()
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
