"""The HTTP protocol ``stadsdata serve`` runs: uvicorn's (httptools), sending each response in one write.

uvicorn writes a response's head when the application starts it and the body when
it comes, two system calls for every response. Each costs a few microseconds and
is made holding the interpreter lock, which the writer thread waits for: for small
responses, such as the 201 of a single Observation, they were a fifth of the
request thread's time. ``OneWriteProtocol`` gives each request's cycle a transport
that holds the head until the first part of the body and writes both together.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _OneWrite:
    """A connection's transport for one response: the head waits for the first body part (or the close)."""

    __slots__ = ("_head", "_started", "transport")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self._head: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        if self._started:
            self.transport.write(data)
        elif self._head is not None:
            self._started = True
            self.transport.write(self._head + data)
            self._head = None
        elif data.startswith(b"HTTP/1.1 1"):  # an interim response (100 Continue) goes at once
            self.transport.write(data)
        else:
            self._head = data

    def release(self) -> None:
        """Write a head that is still held (a response without a body: HEAD, an interrupted one)."""
        if self._head is not None:
            self._started = True
            self.transport.write(self._head)
            self._head = None

    def close(self) -> None:
        self.release()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class OneWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose responses go out in one write each (``uvicorn.run(http=...)``)."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle.transport is not self.transport:  # no new request cycle (an upgrade)
            return
        one = _OneWrite(self.transport)
        cycle.transport = one  # type: ignore[assignment]
        completed = cycle.on_response

        def on_response() -> None:  # a response without body parts (HEAD) ends with its head alone
            one.release()
            completed()

        cycle.on_response = on_response
