"""process-states: children driven into R, S, T and Z, read back from /proc, and nice at work.

What `ps aux` prints in its STAT column is one letter the kernel keeps per process. Here
four children are put into four states on purpose: a busy loop (R), a sleeper (S), one
stopped with SIGSTOP (T) and one that exits while we do not wait for it (Z). Then every
child is reaped and the zombie disappears. Two busy children pinned to one CPU at
different nice values show how the scheduler shares it, and a child that gave up root
shows which priority changes need privileges, with the nice command in the notes' spellings
too. D is explained, not produced. Five more children carry the suffixes ps prints after
the letter (< N l s +), computed from /proc as procps does and set beside ps's own column;
last, the textbooks' five-state model is drawn with Linux's letters on it.

Every state is awaited by polling /proc with a deadline: kill() returns before SIGSTOP is
delivered, and a child is a zombie only once it has really exited.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from lessons.toolkit import procfs
from lessons.toolkit.children import (NOBODY, Children, check_nothing_left, closing_calmly, die_with_parent, drop_privileges,
                              libc)
from lessons.toolkit.common import RunFailure, UserError, wait_for
from lessons.toolkit.i18n import N_, _, ngettext
from lessons.toolkit.narrate import Narrator

SHORT_NAMES = {"R": N_("running"), "S": N_("sleeping"), "D": N_("disk sleep"), "T": N_("stopped"),
               "t": N_("traced"), "Z": N_("zombie"), "I": N_("idle")}


# --- the children ---------------------------------------------------------------------


def start_child(children: Children, name: str, body: Callable[[], int | None]) -> int:
    """Fork a child named `name` (what pstree and `ps -o comm` show) that runs `body`.

    Returns once the child has renamed itself, its first act: from then on its state is
    the state of `body`, not of a process still starting up.
    """
    parent = os.getpid()
    libc()

    def named_body() -> int | None:
        Path("/proc/self/comm").write_text(name)  # a process may rename itself, 15 bytes at most
        die_with_parent(parent)
        return body()

    pid = children.fork(named_body)
    try:
        wait_for(functools.partial(has_name, pid, name), timeout=15)
    except TimeoutError:
        raise RunFailure(_("child {pid} did not start within 15 s; is the machine overloaded?").format(pid=pid)) from None
    return pid


def has_name(pid: int, name: str) -> bool:
    return procfs.name(pid) == name


def busy_loop() -> None:
    while True:  # never waits for anything, so it is always R: on a CPU or queued for one
        pass


def sleep_forever() -> None:
    while True:  # waits for a timer in the kernel: S, interruptible sleep
        time.sleep(3600)


def exit_at_once() -> int:
    return 3  # an exit status the parent will read back from the zombie


def start_four(children: Children, say: Narrator) -> dict[str, int]:
    """Put one child in each of R, S, T, Z, and return name -> pid once each is there."""
    family = {
        "learn-busy": start_child(children, "learn-busy", busy_loop),
        "learn-sleeper": start_child(children, "learn-sleeper", sleep_forever),
        "learn-stopped": start_child(children, "learn-stopped", sleep_forever),
        "learn-zombie": start_child(children, "learn-zombie", exit_at_once),
    }
    reach(say, family["learn-busy"], "R", _("a busy loop"))
    reach(say, family["learn-sleeper"], "S", "time.sleep()")
    reach(say, family["learn-stopped"], "S", _("time.sleep(), before the signal"))
    os.kill(family["learn-stopped"], signal.SIGSTOP)
    reach(say, family["learn-stopped"], "T", _("after kill(pid, SIGSTOP)"))
    reach(say, family["learn-zombie"], "Z", _("returned at once; we have not called waitpid"))
    return family


def reach(say: Narrator, pid: int, letter: str, why: str) -> None:
    """Wait until /proc shows `letter` for `pid`, then say so."""
    try:
        info = procfs.wait_for_state(pid, letter, timeout=15)
    except TimeoutError:
        raise RunFailure(_("child {pid} did not reach state {letter} within 15 s (it is {state}); "
                           "did something else signal it?").format(
            pid=pid, letter=letter, state=procfs.state(pid))) from None
    say("state", f"{info.name} (pid {pid}) is {letter}: {procfs.describe_state(letter)}  [{why}]")


# --- showing them ---------------------------------------------------------------------


def process_table(pids: list[int]) -> Any:
    from rich.table import Table

    table = Table(title=_("read from /proc/<pid>/stat"), title_justify="left")
    for column, justify in (("pid", "right"), ("ppid", "right"), (_("state"), "left"), ("nice", "right"),
                            (_("cpu s"), "right"), (_("name"), "left")):
        table.add_column(column, justify=justify, no_wrap=True)  # no_wrap: never split a word
    for pid in pids:
        info = procfs.read_stat(pid)
        if info is None:
            table.add_row(str(pid), "", "[dim]" + _("gone: reaped") + "[/]", "", "", "")
            continue
        state = f"[bold]{info.state}[/] {_(SHORT_NAMES[info.state]) if info.state in SHORT_NAMES else '?'}"
        table.add_row(str(pid), str(info.ppid), state, str(info.nice), f"{info.cpu_seconds:.2f}", info.name)
    return table


def process_tree(top: int, depth: int = 3) -> Any:
    """A pstree-like view from `top` down, built from /proc's child lists."""
    from rich.tree import Tree

    tree = Tree(tree_label(top))
    add_branches(tree, top, depth)
    return tree


def add_branches(tree: Any, pid: int, depth: int) -> None:
    if depth == 0:
        return
    for child in procfs.children(pid):
        add_branches(tree.add(tree_label(child)), child, depth - 1)


def tree_label(pid: int) -> str:
    info = procfs.read_stat(pid)
    if info is None:
        return f"({pid}) gone"
    return f"{info.name}({pid}) [bold]{info.state}[/]"


def snapshot(pids: list[int]) -> Any:
    from rich.console import Group

    return Group(process_table(pids), process_tree(os.getppid()))


def watch(say: Narrator, family: dict[str, int], seconds: float) -> None:
    """Refresh the table live on a terminal; print it once at the end when piped."""
    pids = [os.getpid(), *family.values()]
    busy, sleeper = family["learn-busy"], family["learn-sleeper"]
    before = {pid: procfs.read_stat(pid) for pid in (busy, sleeper)}
    if say.console.is_terminal:
        from rich.live import Live

        with Live(snapshot(pids), console=say.console, refresh_per_second=4) as live:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(0.25)
                live.update(snapshot(pids))
    else:
        time.sleep(seconds)  # let the busy child burn some CPU, then take one snapshot
        say.console.print(snapshot(pids))
    used = {pid: cpu_used(before[pid], pid) for pid in (busy, sleeper)}
    say("result", _("in {seconds:.1f} s the busy child used {used:.2f} s of CPU, the sleeper "
                    "{sleeper_used:.2f} s").format(seconds=seconds, used=used[busy], sleeper_used=used[sleeper]))


def cpu_used(before: procfs.ProcStat | None, pid: int) -> float:
    after = procfs.read_stat(pid)
    if before is None or after is None:
        return 0.0
    return after.cpu_seconds - before.cpu_seconds


# --- continuing, killing, reaping -----------------------------------------------------


def reap_four(say: Narrator, children: Children, family: dict[str, int]) -> None:
    stopped = family["learn-stopped"]
    os.kill(stopped, signal.SIGCONT)
    reach(say, stopped, "S", _("after kill(pid, SIGCONT): back to its sleep"))
    for name in ("learn-busy", "learn-sleeper", "learn-stopped"):
        os.kill(family[name], signal.SIGKILL)
        reach(say, family[name], "Z", _("after SIGKILL, until we wait for it"))
    say.console.print(process_table(list(family.values())))
    for name, pid in family.items():
        code = children.wait(pid)
        how = (_("killed by {name}").format(name=signal.Signals(-code).name) if code < 0
               else _("exit status {code}").format(code=code))
        say("reap", f"waitpid({pid}) -> {how}; /proc/{pid} {'is gone' if procfs.state(pid) is None else 'STILL EXISTS'}")
    say("result", _("no zombie left: waitpid collected each exit status and the kernel freed the entries"))


# --- nice at work ---------------------------------------------------------------------


def weight(nice_value: int) -> float:
    """The scheduler's weight for a nice value: 1024 at 0, about 1.25 times less per step up.

    The kernel's table (sched_prio_to_weight) holds these numbers rounded: 10 -> 110.
    """
    return 1024 / 1.25 ** nice_value


def race(say: Narrator, children: Children, seconds: float, kinder: int) -> None:
    """Two busy children on one CPU, at our nice and `kinder` steps above: measure their shares."""
    cpu = min(os.sched_getaffinity(0))
    base = os.getpriority(os.PRIO_PROCESS, 0)
    levels = [base, min(19, base + kinder)]

    def racer(level: int) -> Callable[[], None]:
        def run() -> None:
            os.sched_setaffinity(0, {cpu})
            os.setpriority(os.PRIO_PROCESS, 0, level)  # raising nice needs no privilege
            busy_loop()
        return run

    pids = [start_child(children, f"learn-nice{level}", racer(level)) for level in levels]
    for pid, level in zip(pids, levels):
        try:
            wait_for(functools.partial(racer_ready, pid, level, cpu), timeout=15)
        except (TimeoutError, ProcessLookupError):
            raise RunFailure(_("racer {pid} was not at nice {level} on CPU {cpu} within 15 s.").format(
                pid=pid, level=level, cpu=cpu)) from None
    say("race", _("two busy loops pinned to CPU {cpu} at nice {first} and {second}; measuring "
                  "utime+stime for {seconds:.1f} s").format(
        cpu=cpu, first=levels[0], second=levels[1], seconds=seconds))
    started = time.monotonic()
    before = [procfs.read_stat(pid) for pid in pids]
    time.sleep(seconds)  # the measurement window
    used = [cpu_used(start, pid) for start, pid in zip(before, pids)]
    elapsed = time.monotonic() - started  # a loaded machine may oversleep
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
        children.wait(pid)
    report_race(say, levels, used, elapsed)


def racer_ready(pid: int, level: int, cpu: int) -> bool:
    """True once the racer has set its own nice value and CPU (it does so right after fork)."""
    return procfs.nice(pid) == level and os.sched_getaffinity(pid) == {cpu}


def report_race(say: Narrator, levels: list[int], used: list[float], seconds: float) -> None:
    total = sum(used)
    if total <= 0:
        raise RunFailure(_("the two busy children got no CPU time at all; is this machine overloaded?"))
    weights = [weight(level) for level in levels]
    for level, cpu_seconds, level_weight in zip(levels, used, weights):
        say("result", _("nice {level:>2}: {cpu_seconds:.2f} s of CPU = {share:.1f}% (weight "
                        "{weight:.0f}, expected {expected:.1f}%)").format(
            level=level, cpu_seconds=cpu_seconds, share=100 * cpu_seconds / total, weight=level_weight,
            expected=100 * level_weight / sum(weights)))
    say("result", _("together they had {total:.2f} s of the {seconds:.1f} s window on that CPU "
                    "(other processes on this machine may take the rest)").format(total=total, seconds=seconds))
    say("explain", _("The scheduler gives runnable processes CPU time in proportion to their "
                     "weights. Each nice step is about 1.25x less weight (roughly 10% less CPU "
                     "next to a nice 0 competitor). Nice changes shares, not speed: alone on a "
                     "CPU, nice 19 runs flat out."))


# --- what needs privileges ------------------------------------------------------------


def try_lowering_nice() -> str:
    """Ask for nice -5 (a higher priority) for this process."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -5)
    except PermissionError as err:
        return _("os.setpriority(..., -5) raised PermissionError: {strerror}").format(strerror=err.strerror)
    return _("os.setpriority(..., -5) worked: nice is now {priority}").format(priority=os.getpriority(os.PRIO_PROCESS, 0))


def as_ordinary_user() -> str:
    """Drop root if we have it, then go up 5 nice steps, try to come back, try nice -5."""
    drop_privileges()
    start = os.getpriority(os.PRIO_PROCESS, 0)
    higher = min(19, start + 5)
    os.setpriority(os.PRIO_PROCESS, 0, higher)  # going up is always allowed...
    try:
        os.setpriority(os.PRIO_PROCESS, 0, start)  # ...coming back down is not
        back = _("and back to {start} worked").format(start=start)
    except PermissionError:
        back = _("but back to {start} raised PermissionError").format(start=start)
    return f"uid {os.getuid()}: nice {higher} worked, {back}; {try_lowering_nice()}"


def nice_limit_text() -> str:
    """What RLIMIT_NICE allows: an unprivileged process may lower its nice to 20 - limit."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    if soft == resource.RLIM_INFINITY:
        return _("unlimited here")
    return _("{soft} here, so no lowering at all").format(soft=soft) if soft <= 1 else _("{soft} here: down to nice {lowest}").format(
        soft=soft, lowest=20 - soft)


def run_under_nice(options: list[str]) -> str:
    """`nice OPTIONS nice`: the inner nice, given no command, prints the niceness it runs at."""
    result = subprocess.run(["nice", *options, "nice"], check=False, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=30)
    said = result.stderr.strip()
    answer = _("$ nice {options} nice  ->  {niceness}").format(options=" ".join(options),
                                                               niceness=result.stdout.strip() or "?")
    return answer + (_("   (nice warned: {warning})").format(warning=said) if said else "")


def refused_calls(value: int = -9) -> list[str]:
    """The two system calls behind nice, tried with a negative value: nice(2) and setpriority(2)."""
    calls = ((f"os.nice({value})", lambda: os.nice(value)),
             (f"os.setpriority(os.PRIO_PROCESS, 0, {value})", lambda: os.setpriority(os.PRIO_PROCESS, 0, value)))
    lines = []
    for label, call in calls:
        try:
            call()
            lines.append(_("{call} worked: nice is now {nice}").format(call=label, nice=os.getpriority(os.PRIO_PROCESS, 0)))
        except OSError as err:
            name = errno.errorcode.get(err.errno or 0, "?")
            lines.append(_("{call} raised {error} [{name}] {reason}").format(
                call=label, error=type(err).__name__, name=name, reason=err.strerror))
    return lines


def nice_as_root() -> str:
    """In a child that stays root: the four spellings, the notes' two among them."""
    return "\n".join(run_under_nice(options) for options in (["-n", "9"], ["-9"], ["-n", "-9"], ["--9"]))


def nice_as_nobody() -> str:
    """In a child that gave up root: going up works, going below 0 is refused."""
    drop_privileges()
    lines = [_("uid {uid}:").format(uid=os.getuid())]
    if shutil.which("nice"):
        lines += [run_under_nice(["-n", "9"]), run_under_nice(["-n", "-9"])]
    return "\n".join(lines + refused_calls(-9))


def show_nice_command(say: Narrator, children: Children) -> None:
    """`nice -n 9` and `nice -n -9`, and the notes' spellings `nice -9` and `nice --9`."""
    if shutil.which("nice") is None:
        say("perm", _("the nice command is not installed here; only the system calls are tried"))
    elif os.geteuid() == 0:
        say("perm", _("as root, the nice command in four spellings (the inner `nice` prints its niceness):"))
        for line in children.ask(nice_as_root).splitlines():
            say("result", line)
    say("perm", _("a child that gave up root (setuid {uid}, nobody) tries the same:").format(uid=NOBODY)
        if os.geteuid() == 0 else _("as uid {uid}, an ordinary user:").format(uid=os.geteuid()))
    for line in children.ask(nice_as_nobody).splitlines():
        say("result", line)
    say("explain", _("`nice -9` is the old spelling of `nice -n 9`: the dash marks an option, the option is "
                     "the number, so -9 means +9. `nice --9` is option -9, a real minus: `nice -n -9`. "
                     "Going below 0 takes CPU from everyone else, so only a process with CAP_SYS_NICE "
                     "(root) may: the kernel refuses nice(2) with EPERM and setpriority(2) with EACCES. "
                     "GNU nice only warns and runs the command anyway, at its old niceness."))


def show_privileges(say: Narrator, children: Children) -> None:
    show_nice_command(say, children)
    if os.geteuid() == 0:
        say("perm", _("we run as root: a child that stays root tries nice -5 ..."))
        say("result", children.ask(try_lowering_nice))
        say("perm", _("... and a child that gave up root (setuid {uid}, nobody) tries the same:").format(uid=NOBODY))
    else:
        say("perm", _("we run as uid {euid}, an ordinary user; a child tries:").format(euid=os.geteuid()))
    say("result", children.ask(as_ordinary_user))
    say("explain", _("Raising nice is always allowed; lowering it, even back where it was, needs "
                     "CAP_SYS_NICE (root) or a large enough RLIMIT_NICE ({limit}).").format(limit=nice_limit_text()))


def explain_disk_sleep(say: Narrator) -> None:
    in_d = [pid for pid in procfs.all_pids() if procfs.state(pid) == "D"]
    say("explain", _("D, uninterruptible sleep: the process waits inside the kernel for something "
                     "that must finish (a disk or NFS read, some driver calls). Signals wait until "
                     "it returns, even SIGKILL (except in the few 'killable' waits); it counts in "
                     "the load average. It is not produced here: making one on purpose needs a "
                     "slow device or a hung NFS server."))
    say("result", ngettext("right now {count} process on this machine is in D",
                           "right now {count} processes on this machine are in D", len(in_d)).format(count=len(in_d)))


# --- the STAT column's suffixes ----------------------------------------------------------


def sleep_at_nice(level: int) -> Callable[[], None]:
    def run() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, level)
        sleep_forever()
    return run


def sleep_with_a_thread() -> None:
    import threading

    threading.Thread(target=sleep_forever, daemon=True).start()
    sleep_forever()


def lead_a_session() -> None:
    os.setsid()  # a new session and process group, with this process as the leader of both
    sleep_forever()


def lead_a_session_on(terminal: str) -> Callable[[], None]:
    def run() -> None:
        os.setsid()
        os.open(terminal, os.O_RDWR)  # a session leader's first terminal becomes its controlling one
        sleep_forever()
    return run


def suffix_children(terminal: str) -> list[tuple[str, Callable[[], None], str, str]]:
    """(name, body, the suffixes /proc must show, why) for each child of part 6.

    Children that stay in our process group are in the terminal's foreground group when
    the lesson runs in the foreground of a terminal: they show `+` too.
    """
    me = procfs.read_stat(os.getpid())
    ours = "+" if me is not None and me.tpgid == me.pgrp else ""
    family = []
    if os.geteuid() == 0:
        family.append(("learn-high", sleep_at_nice(-5), "<" + ours, _("nice -5: high priority")))
    family += [
        ("learn-low", sleep_at_nice(5), "N" + ours, _("nice 5: low priority")),
        ("learn-threads", sleep_with_a_thread, "l" + ours, _("a second thread: multi-threaded")),
        ("learn-leader", lead_a_session, "s", _("os.setsid(): leads a new session, no terminal")),
        ("learn-term", lead_a_session_on(terminal), "s+", _("os.setsid(), then opened a terminal: its foreground")),
    ]
    return family


def ps_stat(pids: list[int]) -> dict[int, str]:
    """ps's own STAT column for `pids`, when ps is installed."""
    if shutil.which("ps") is None:
        return {}
    result = subprocess.run(["ps", "-o", "pid=,stat=", "-p", ",".join(map(str, pids))], check=False,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    rows = (line.split() for line in result.stdout.splitlines())
    return {int(row[0]): row[1] for row in rows if len(row) == 2}


def suffix_table(rows: list[tuple[str, int, str, str]], from_ps: dict[int, str]) -> Any:
    from rich.table import Table

    from rich import box

    table = Table(title=_("STAT computed from /proc/<pid>/stat, next to ps -o stat"), title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False)
    for column in ("pid", "name", "nice", "threads", "sid", "pgrp", "tpgid", "ours", "ps"):
        table.add_column(column, no_wrap=True)
    for name, pid, stat, _why in rows:
        info = procfs.read_stat(pid)
        if info is None:
            continue
        table.add_row(str(pid), name, str(info.nice), str(info.threads), str(info.session), str(info.pgrp),
                      str(info.tpgid), f"[bold]{stat}[/]", from_ps.get(pid, "-"))
    return table


def show_stat_suffixes(say: Narrator, children: Children) -> None:
    """Children made to carry each of ps's suffixes, read back as procps reads them."""
    import pty

    controller, terminal = pty.openpty()
    try:
        rows = []
        for name, body, suffixes, why in suffix_children(os.ttyname(terminal)):
            pid = start_child(children, name, body)
            try:
                wait_for(lambda: procfs.stat_of(pid) == "S" + suffixes, timeout=15)
            except TimeoutError:
                raise RunFailure(_("child {pid} did not show STAT S{suffixes} within 15 s (it shows {stat}).")
                                 .format(pid=pid, suffixes=suffixes, stat=procfs.stat_of(pid))) from None
            rows.append((name, pid, "S" + suffixes, why))
        from_ps = ps_stat([pid for _, pid, _, _ in rows])
        say.console.print(suffix_table(rows, from_ps))
        for name, pid, stat, why in rows:
            agree = _("ps agrees") if from_ps.get(pid) == stat else _("ps says {ps}").format(ps=from_ps.get(pid, "-"))
            say("stat", _("{name} (pid {pid}) is {stat}: {why}; {agree}").format(
                name=name, pid=pid, stat=stat, why=why, agree=agree))
        for _name, pid, _stat, _why in rows:
            os.kill(pid, signal.SIGKILL)
            children.wait(pid)
    finally:
        os.close(controller)
        os.close(terminal)
    say("explain", _("After the state letter ps adds: < nice below 0, N nice above 0, L pages locked in "
                     "memory, s the leader of its session (its pid is the session id), l more than one "
                     "thread, + in the foreground process group of its terminal (its process group is the "
                     "terminal's tpgid). A shell in a terminal reads Ss, the command you run from it S+."))


# --- the five-state model ---------------------------------------------------------------

FIVE_STATES = """\
   fork()
  ┌─────┐ admitted ┌───────┐ scheduled ┌─────────┐ exit ┌──────────┐
  │ new │ ───────> │ ready │ ────────> │ running │ ───> │terminated│
  └─────┘          │   R   │ <──────── │    R    │      │    Z     │
                   └───────┘ preempted └─────────┘      └──────────┘
                       ^    (time slice     │           waitpid()
                       │     used up)       │ waits:    removes it
          event comes  │                    │ read(),
      (data, a timer)  │   ┌─────────┐      │ sleep(),
                       └───│ waiting │<─────┘ a lock
                           │ S or D  │
                           └─────────┘"""

def linux_letters() -> list[tuple[str, str]]:
    """Each of Linux's state letters, and where it sits in the five-state model."""
    return [
        ("R", _("ready and running: one letter for both")),
        ("S", _("waiting; a signal wakes it")),
        ("D", _("waiting inside the kernel; nothing wakes it")),
        ("Z", _("terminated, not yet reaped by its parent")),
        ("T", _("stopped by SIGSTOP or Ctrl-Z: outside the five (suspended)")),
        ("-", _("new has no letter of its own: the kernel builds the child inside fork()")),
    ]


def show_five_states(say: Narrator) -> None:
    """The textbook's diagram, then what each of Linux's letters is in it."""
    say.console.print(FIVE_STATES, markup=False, highlight=False, soft_wrap=True)
    for letter, meaning in linux_letters():
        say("letter", f"{letter}  {meaning}")


# --- the lesson -----------------------------------------------------------------------


def check_linux() -> None:
    if not procfs.PROC.is_dir() or not hasattr(os, "sched_setaffinity"):
        raise UserError(_("process-states reads /proc, which only Linux has; on macOS try `ps -o "
                          "pid,ppid,stat,nice,comm` instead."))


def main(
    seconds: Annotated[float, typer.Option(min=0.2, max=60.0, help=_("How long the two niced children race."))] = 3.0,
    nice_value: Annotated[int, typer.Option("--nice", min=1, max=19, help=_("The nice value of the kinder racer."))] = 10,
    watch_seconds: Annotated[float, typer.Option("--watch", min=0.0, max=600.0,
                                                 help=_("How long the four children are watched."))] = 2.5,
    quick: Annotated[bool, typer.Option("--quick", help=_("A short run: 1 s race, a short look."))] = False,
) -> None:
    """Children in R, S, T and Z read from /proc, a process tree, and nice at work."""
    check_linux()
    if quick:
        watch_seconds, seconds = min(watch_seconds, 0.3), min(seconds, 1.0)
    say = Narrator()
    say("explain", _("ps aux shows one letter per process in its STAT column; four children are "
                     "put into four of them on purpose, and everything below is read from "
                     "/proc/<pid>/stat."))
    with closing_calmly(say):
        with Children() as children:
            run_parts(say, children, watch_seconds, seconds, nice_value)
        check_nothing_left(say)


def run_parts(say: Narrator, children: Children, watch_seconds: float, seconds: float, nice_value: int) -> None:
    say.rule(_("1. Four children, four states"))
    family = start_four(children, say)
    watch(say, family, watch_seconds)
    say.rule(_("2. Continue, kill, reap: the zombies go away"))
    reap_four(say, children, family)
    say.rule(_("3. nice: sharing one CPU"))
    race(say, children, seconds, nice_value)
    say.rule(_("4. What needs privileges"))
    show_privileges(say, children)
    say.rule(_("5. The state you will not see here: D"))
    explain_disk_sleep(say)
    say.rule(_("6. The STAT column's suffixes: < N l s +"))
    show_stat_suffixes(say, children)
    say.rule(_("7. The five-state model, and where Linux's letters sit"))
    show_five_states(say)
