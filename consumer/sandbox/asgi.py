"""The few ASGI primitives the simulator speaks: read a body, answer JSON, drop a connection."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def header(scope: Scope, name: str) -> str | None:
    """Return the value of a request header, whatever the case of its name."""
    wanted = name.lower().encode()
    for key, value in scope["headers"]:
        if key.lower() == wanted:
            return bytes(value).decode("latin-1")
    return None


def origin(scope: Scope) -> str:
    """Return scheme, host and port of the server as the client addressed it."""
    host = header(scope, "host")
    if not host and scope.get("server"):
        host = "{}:{}".format(*scope["server"])
    return f"{scope['scheme']}://{host}"


async def read_body(receive: Receive) -> bytes:
    """Read the whole request body."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def replay(body: bytes) -> Receive:
    """Return a `receive` that hands an already read body to an inner application."""
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if delivered:
            # An inner application only asks again to learn of a disconnect; it never comes.
            await asyncio.Event().wait()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def send_json(
    send: Send,
    status: int,
    body: Any,
    *,
    headers: MutableMapping[str, str] | None = None,
    content_type: str = "application/json",
) -> None:
    """Answer with a JSON body."""
    payload = json.dumps(body).encode()
    all_headers = {"content-type": content_type, "content-length": str(len(payload))}
    all_headers.update(headers or {})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _transport(send: Send) -> asyncio.Transport:
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if not isinstance(transport, asyncio.Transport):
        raise RuntimeError("the ASGI server does not expose its transport")
    return transport


async def write_raw_and_close(send: Send, receive: Receive, data: bytes) -> None:
    """Write `data` as it is (no HTTP framing) on the client's connection, then close it."""
    transport = _transport(send)
    transport.write(data)
    transport.close()
    await receive()


async def abort_connection(send: Send, receive: Receive) -> None:
    """Drop the client's connection with a TCP reset and no response.

    ASGI has no message for this, so it reaches the transport of uvicorn's
    request cycle, the object `send` is bound to.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if not isinstance(transport, asyncio.Transport):
        raise RuntimeError("the ASGI server does not expose its transport; cannot reset")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 turns the close into an RST, which clients report as a reset.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Wait for uvicorn to see the loss, so it does not try to answer 500 on a dead socket.
    await receive()
