"""`learn chat join`: the chat client. Two input loops share everything else.

- In a terminal, prompt_toolkit keeps the line you are typing at the bottom while
  messages arrive above it: one asyncio task reads frames, the prompt reads keys.
- With stdin not a terminal ("pipe mode"), a select() loop watches stdin and the socket,
  exactly like the lessons' servers do, and prints events one per line, plain, so that
  scripts and tests can read them.

One concern per module, each importing only the ones above it:

    texts.py        every string shown, in English and Chinese
    pacing.py       long texts split into SAYs, SAYs paced below the rate limit (pure)
    view.py         frames -> lines to show, typed lines -> frames (pure)
    link.py         where the chat is, and one connection to it
    session.py      joining and leaving, the same in both modes; how a chat ends
    pipe.py         pipe mode: a select() loop over stdin and the socket
    interactive.py  interactive mode: prompt_toolkit and asyncio
    main.py         run_client: picks the mode, turns each ending into an exit status

Whatever the server relays is shown as text and never interpreted: names and messages
pass through `lessons.toolkit.common.printable` (no terminal escape sequence reaches the screen),
odd names are quoted so that nobody can pose as another member or as the administrator,
and the later lines of a multi-line message are indented behind a marker, so they cannot
pass for lines of their own. Colour goes through prompt_toolkit's (style, text) pairs,
which are never parsed for markup, so a member called `[/]` is just that.

Commands
    `/who` lists the members, `/help` lists the commands, `/quit` (or Ctrl-D, or Ctrl-C)
    leaves. Any other line starting with `/word` is refused here, so a typo is never
    sent to everyone; start a line with `//` to send it with one slash less (`//who`
    says "/who"). A first word that is not `/` and letters (`/ is the root`,
    `/etc/hosts changed`) makes an ordinary message.

Long texts
    A paste longer than one SAY goes out as several messages, paced below the server's
    rate limit; pacing.py says how it is cut and how fast it goes.

Exit status
    0 when you leave (/quit, Ctrl-D, Ctrl-C: one line, "you left the room"); 1 when the
    chat ends under you (kicked, the server stopping: a plain notice; a lost connection:
    an error); 2 for what you can fix (no server there, not a chat server, name refused
    in pipe mode).
"""

from capstone.client.link import Target
from capstone.client.main import run_client

__all__ = ["Target", "run_client"]
