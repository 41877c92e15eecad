"""The chat as most Python programmers would write it: asyncio streams, a coroutine per client.

This is the yardstick `learn bench chat` measures our engines against, so it is written
the idiomatic way, not tuned: `asyncio.start_server`, `readexactly` for the header and
the payload, one `writer.write` per recipient of a broadcast, and `await writer.drain()`
for the recipients whose transport buffer is above its high-water mark. It speaks the
protocol's core frames (JOIN/WELCOME/JOINED, SAY/MESSAGE, LEAVE/LEFT, plus PING and WHO)
and validates names and texts with the same rules as our server (capstone.names).

    python -m capstone.bench.peers.asyncio_chat --port 0 [--uvloop]

prints "listening on 127.0.0.1:PORT" once ready, and exits 0 on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from capstone.codec import DEFAULT_MAX_PAYLOAD, HEADER, MAX_PING, ErrorCode, Kind, encode, encode_error, encode_message
from capstone.names import name_key, normalize, text_problem, why_invalid

HIGH_WATER = 64 * 1024  # asyncio's default high-water mark for a transport's buffer


class AsyncioChatServer:
    """The whole server: one handler per client, members by name key in join order (dicts keep it)."""

    def __init__(self, max_payload: int) -> None:
        self.max_payload = max_payload
        self.members: dict[str, tuple[str, asyncio.StreamWriter]] = {}
        self.stopping = asyncio.Event()  # set by SIGINT/SIGTERM: handlers stop at their next frame

    async def broadcast(self, frame: bytes, skip: asyncio.StreamWriter | None = None) -> None:
        """Write to everyone first (so all see one order), then wait for the slow ones."""
        writers = [writer for _, writer in self.members.values() if writer is not skip]
        for writer in writers:
            writer.write(frame)
        for writer in writers:
            if writer.transport.get_write_buffer_size() > HIGH_WATER:
                try:
                    await writer.drain()
                except ConnectionError:
                    pass  # that member's own handler notices and says LEFT

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        name: str | None = None
        try:
            while not self.stopping.is_set():  # readexactly does not yield while data is buffered
                length, kind = HEADER.unpack(await reader.readexactly(HEADER.size))
                if length > self.max_payload:
                    writer.write(encode_error(ErrorCode.TOO_LARGE, f"the limit is {self.max_payload} bytes"))
                    break
                payload = await reader.readexactly(length)
                if kind == Kind.LEAVE:
                    break
                name = await self.on_frame(kind, payload, name, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if name is not None:
                del self.members[name_key(name)]
                if not self.stopping.is_set():  # at shutdown nobody needs to hear LEFT
                    await self.broadcast(encode(Kind.LEFT, name.encode()))
            writer.close()

    async def on_frame(self, kind: int, payload: bytes, name: str | None, writer: asyncio.StreamWriter) -> str | None:
        """Answer one frame; returns the member's name (None until a JOIN succeeds)."""
        if kind == Kind.PING:
            if len(payload) > MAX_PING:
                writer.write(encode_error(ErrorCode.BAD_FRAME, "a PING carries at most 64 bytes"))
            else:
                writer.write(encode(Kind.PONG, payload))
        elif kind == Kind.WHO and name is not None:
            names = [member for member, _ in self.members.values()]
            writer.write(encode(Kind.MEMBERS, "\n".join(names).encode()))
        elif kind == Kind.JOIN:
            return await self.join(payload, name, writer)
        elif kind == Kind.SAY:
            await self.say(payload, name, writer)
        elif kind == Kind.WHO:
            writer.write(encode_error(ErrorCode.NOT_JOINED, "join first"))
        else:
            writer.write(encode_error(ErrorCode.BAD_FRAME, f"unknown frame kind {kind}"))
        return name

    async def join(self, payload: bytes, name: str | None, writer: asyncio.StreamWriter) -> str | None:
        try:
            wanted = normalize(payload.decode())
        except UnicodeDecodeError:
            writer.write(encode_error(ErrorCode.BAD_FRAME, "a name must be UTF-8"))
            return name
        if name is not None:
            writer.write(encode_error(ErrorCode.ALREADY_JOINED, "you already joined"))
            return name
        problem = why_invalid(wanted)
        if problem:
            writer.write(encode_error(ErrorCode.NAME_INVALID, problem))
            return None
        if name_key(wanted) in self.members:
            writer.write(encode_error(ErrorCode.NAME_TAKEN, f"{wanted} is taken"))
            return None
        writer.write(encode(Kind.WELCOME, wanted.encode()))
        self.members[name_key(wanted)] = (wanted, writer)  # before any await: no broadcast is missed
        await self.broadcast(encode(Kind.JOINED, wanted.encode()), skip=writer)
        return wanted

    async def say(self, payload: bytes, name: str | None, writer: asyncio.StreamWriter) -> None:
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            writer.write(encode_error(ErrorCode.BAD_FRAME, "a message must be UTF-8"))
            return
        problem = text_problem(text)
        if problem:
            writer.write(encode_error(ErrorCode.BAD_FRAME, problem))
        elif name is None:
            writer.write(encode_error(ErrorCode.NOT_JOINED, "join first"))
        else:
            await self.broadcast(encode_message(name, text), skip=writer)


async def serve(host: str, port: int, max_payload: int) -> None:
    chat = AsyncioChatServer(max_payload)
    server = await asyncio.start_server(chat.handle, host, port)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    print(f"listening on {bound_host}:{bound_port}", flush=True)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, chat.stopping.set)
    async with server:
        await chat.stopping.wait()
        goodbye = encode_error(ErrorCode.SHUTDOWN, "the server is stopping")
        for _, writer in list(chat.members.values()):
            writer.write(goodbye)
            writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="An idiomatic asyncio-streams chat server (benchmark peer).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--max-payload", type=int, default=DEFAULT_MAX_PAYLOAD)
    parser.add_argument("--uvloop", action="store_true", help="run the same code on uvloop's event loop")
    args = parser.parse_args(argv)
    loop_factory = None
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            print("error: uvloop is not installed: pip install 'learn-netprog[fast]'.", file=sys.stderr)
            return 2
        loop_factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(args.host, args.port, args.max_payload))
    except OSError as err:
        print(f"error: cannot listen on {args.host}:{args.port}: {err.strerror}.", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
