"""A tiny HTTP server on 127.0.0.1 (a free port, in a thread) whose answers a test decides, for the clients
under test (the metrics scraper, the dashboard poller) to talk to over real sockets."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Mapping

# (path, request headers) -> (status, content type, body)
Respond = Callable[[str, Mapping[str, str]], tuple[int, str, bytes]]


class LoopbackHTTP:
    def __init__(self, respond: Respond) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, content_type, body = respond(self.path, self.headers)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.address}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
