"""Interactive mode (a terminal): prompt_toolkit and asyncio.

prompt_toolkit keeps the line you are typing at the bottom while messages arrive above
it: one asyncio task reads frames, the prompt reads keys. Colour goes through
prompt_toolkit's (style, text) pairs, which are never parsed for markup, so a member
called `[/]` is just that. prompt_toolkit is imported only when a terminal is there to
use it, so pipe mode and `learn --help` never pay for it.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from typing import TYPE_CHECKING, Callable

from capstone import codec
from capstone.client.link import Link, Target
from capstone.client.pacing import Outbox
from capstone.client.session import (
    ANSWER_TIMEOUT, INTERRUPTED_PATIENCE, finish, join_room, leave, say_on_fresh_line, show_frames,
)
from capstone.client.view import Ended, Shown, View, fit_to_width
from capstone.codec import Kind
from lessons.toolkit.framing import FrameTooLarge

if TYPE_CHECKING:  # prompt_toolkit is imported only when a terminal is there to use it
    from prompt_toolkit import PromptSession


STYLES = {
    "welcome": "bold",
    "joined": "ansigreen",
    "left": "ansiyellow",
    "message": "",
    "announce": "bold ansimagenta",
    "members": "ansicyan",
    "problem": "ansired",
    "hint": "italic",
    "note": "italic",
}


def show_styled(shown: Shown) -> None:
    """Print above the prompt; (style, text) pairs are never parsed, so no markup injection."""
    from prompt_toolkit import print_formatted_text
    from prompt_toolkit.formatted_text import FormattedText

    style = STYLES.get(shown.style, "")
    width = shutil.get_terminal_size().columns
    print_formatted_text(FormattedText([(style, "\n".join(fit_to_width(shown.lines, width)))]))


def run_interactive(target: Target, view: View, name: str | None) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _new_line(event) -> None:  # type: ignore[no-untyped-def]
        event.current_buffer.insert_text("\n")

    @bindings.add("c-c")
    def _leave(event) -> None:  # type: ignore[no-untyped-def]
        """Ctrl-C ends the prompt like Ctrl-D: a KeyboardInterrupt raised inside an asyncio
        task escapes the event loop and leaves "Task exception was never retrieved"."""
        event.app.exit(exception=EOFError())

    session: PromptSession[str] = PromptSession(key_bindings=bindings)
    signal.signal(signal.SIGTERM, end_prompt_on_sigterm(session))

    def ask_name(problem: str | None) -> str | None:
        if problem:
            show_styled(Shown("problem", (problem,)))
        try:
            return session.prompt(view.texts["name_prompt"])
        except (EOFError, KeyboardInterrupt):
            return None

    joined = join_room(target, view, name, ask_name)
    if joined is None:
        say_on_fresh_line(view.texts["interrupted"])
        return 0
    link, welcome = joined
    show_styled(welcome)
    show_styled(Shown("hint", (view.texts["hint"],)))
    try:
        ended = asyncio.run(chat_interactive(session, link, view))
    except KeyboardInterrupt:  # a SIGINT while no prompt was up to turn it into a key
        print(flush=True)  # past the ^C the terminal echoed
        leave(link, view, show_styled, INTERRUPTED_PATIENCE)
        ended = None
    finally:
        link.close()
    if ended is not None:
        finish(ended)
    show_styled(Shown("left", (view.goodbye(),)))
    return 0


def end_prompt_on_sigterm(session: PromptSession[str]) -> Callable[[int, object], None]:
    """SIGTERM ends a prompt the way Ctrl-C does, so prompt_toolkit restores the terminal
    (raw mode, bracketed paste); with no prompt up it is a KeyboardInterrupt."""
    def handler(signum: int, frame: object) -> None:
        app = session.app
        if not app.is_running or app.loop is None:
            raise KeyboardInterrupt
        app.loop.call_soon_threadsafe(end_prompt, app)

    return handler


def end_prompt(app) -> None:  # type: ignore[no-untyped-def]
    if app.is_running and app.future is not None and not app.future.done():
        app.exit(exception=EOFError())


def ignore_interrupts(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """The loop's exception handler: a Ctrl-C that hit a task is handled by run_interactive."""
    if not isinstance(context.get("exception"), KeyboardInterrupt):
        loop.default_exception_handler(context)


async def chat_interactive(session: PromptSession[str], link: Link, view: View) -> Ended | None:
    """Prompt and receive at once; None when the user left, Ended when the server did."""
    from prompt_toolkit.patch_stdout import patch_stdout

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(ignore_interrupts)
    link.sock.setblocking(False)
    outbox = Outbox()
    receiving = asyncio.create_task(receive_forever(loop, link, view))
    with patch_stdout():
        try:
            while True:
                prompting = asyncio.create_task(session.prompt_async("> "))
                await asyncio.wait({prompting, receiving}, return_when=asyncio.FIRST_COMPLETED)
                if receiving.done():
                    prompting.cancel()
                    await asyncio.gather(prompting, return_exceptions=True)
                    return receiving.result()
                try:
                    wanted = view.outgoing(prompting.result())
                except (EOFError, KeyboardInterrupt):
                    break
                if wanted.shown:
                    show_styled(wanted.shown)
                outbox.extend(wanted.frames)
                await send_paced(loop, link, outbox)
                if wanted.quit:
                    break
            await send_async(loop, link, codec.encode(Kind.LEAVE))
            try:
                await asyncio.wait_for(asyncio.shield(receiving), ANSWER_TIMEOUT)
            except asyncio.TimeoutError:
                pass
        finally:
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
    return None


async def send_paced(loop: asyncio.AbstractEventLoop, link: Link, outbox: Outbox) -> None:
    """Send what waits in the outbox, each SAY when the Pacer lets it go."""
    while (wait := outbox.delay(time.monotonic())) is not None:
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            await send_async(loop, link, outbox.pop(time.monotonic()))


async def send_async(loop: asyncio.AbstractEventLoop, link: Link, data: bytes) -> None:
    try:
        await loop.sock_sendall(link.sock, data)
    except OSError:
        pass  # the receiving task sees the same failure and reports it


async def receive_forever(loop: asyncio.AbstractEventLoop, link: Link, view: View) -> Ended:
    """Show frames as they arrive, until the server ends the chat; return why."""
    while True:
        try:
            data = await loop.sock_recv(link.sock, 65536)
            received = link.feed(data) if data else view.closed()
        except OSError as err:
            received = view.lost(err)
        except FrameTooLarge as err:
            received = view.huge(err)
        ended = show_frames(received, view, show_styled)
        if ended:
            return ended
