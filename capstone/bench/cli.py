"""`learn bench multiplexers|chat|scale|hostile`: measurements a learner can rerun on their machine.

Only typer is imported here; the measuring and the rich rendering load when a command runs.
Every command prints a table (and a chart where it helps), or with --json exactly one
JSON document on stdout and nothing else.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from lessons.toolkit.i18n import _

app = typer.Typer(help=_("Measure the multiplexers and the chat server; rerun them on your machine."),
                  no_args_is_help=True)

MAX_FORK_MEMBERS = 1000  # 5,000 relay processes would need several GiB
MULTIPLEXER_COLOURS = {"select": "red", "poll": "yellow", "epoll": "green", "selectors": "cyan"}


@app.command(help=_(
    "Cost of one wait call with N watched descriptors, one of them ready: select, poll, "
    "epoll, selectors."))
def multiplexers(
    max_fds: Annotated[int, typer.Option(help=_("The largest number of watched descriptors."), min=10)] = 10_000,
    repeat: Annotated[int, typer.Option(help=_("Timed wait calls per multiplexer and N (the median is shown)."), min=5)] = 1000,
    json: Annotated[bool, typer.Option("--json", help=_("Print one JSON document instead of the table."))] = False,
) -> None:
    from capstone.bench.multiplexers import run

    if json:
        report = run(max_fds, repeat)
    else:
        from rich.console import Console

        with Console(stderr=True).status(_("timing wait calls...")) as status:
            report = run(max_fds, repeat, on_progress=lambda text: status.update(f"timing {text}..."))
    if json:
        print_json({**report.as_json(), "machine": _machine()})
        return
    show_multiplexers(report)


@app.command(help=_(
    "Load the chat server: members join, senders send, every member counts, times and orders "
    "what arrives."))
def chat(
    clients: Annotated[int, typer.Option(help=_("Members who join."), min=2)] = 100,
    senders: Annotated[int, typer.Option(help=_("How many of them send."), min=1)] = 20,
    messages: Annotated[int, typer.Option(help=_("Messages each sender sends."), min=1)] = 200,
    size: Annotated[int, typer.Option(help=_("Bytes of text per message (at least 34: the stamp)."))] = 64,
    engine: Annotated[str, typer.Option(help=_("Our engine to measure when --against is not given."))] = "epoll",
    against: Annotated[Optional[str], typer.Option(
        help=_("Comma-separated servers, or all: asyncio,uvloop,epoll,poll,select,selectors,fork."))] = None,
    rate: Annotated[float, typer.Option(
        help=_("Messages per second per sender; 0 = as fast as the server takes them."), min=0)] = 0.0,
    repeat: Annotated[int, typer.Option(help=_("Runs per server, each on a fresh server; the median is shown."), min=1)] = 3,
    workers: Annotated[int, typer.Option(help=_("Load-generator processes."), min=1)] = 2,
    timeout: Annotated[float, typer.Option(
        help=_("Seconds to join, and seconds to deliver; what has not arrived by then counts as lost."), min=1)] = 120.0,
    json: Annotated[bool, typer.Option("--json", help=_("Print one JSON document instead of the table."))] = False,
    irc: Annotated[int, typer.Option(
        help=_("How many of the listening members join over IRC (our engines only)."), min=0)] = 0,
    cluster: Annotated[Optional[int], typer.Option(
        help=_("Compare 1 cluster node, N nodes on one port and N nodes on N ports, through a NATS "
               "server the benchmark starts (epoll nodes)."), show_default=False)] = None,
) -> None:
    from capstone.bench.load import compare, compare_cluster
    from capstone.bench.load_spec import Load
    from capstone.bench.servers import parse_targets
    from lessons.toolkit.common import UserError

    load = Load(clients, senders, messages, size, rate, workers, timeout, irc)
    problem = load.check() or cluster_problem(cluster, engine, against, irc)
    if problem:
        raise UserError(problem)
    if cluster is not None:
        def measure(on_run=None):  # noqa: ANN001, ANN202
            return compare_cluster(cluster, load, repeat, on_run)
    else:
        targets = parse_targets(against if against else engine)

        def measure(on_run=None):  # noqa: ANN001, ANN202
            return compare(targets, load, repeat, on_run=on_run)
    comparison = measure() if json else compare_with_progress(load, repeat, measure)
    if not comparison.results:
        raise UserError(_("nothing was measured: ") + "; ".join(comparison.skipped.values()) + ".")
    if json:
        print_json(chat_json(comparison))
        return
    show_chat(comparison)


@app.command(help=_(
    "Many idle members, one message at a time: how long until the last one has it, and "
    "memory per member."))
def scale(
    members: Annotated[int, typer.Option(help=_("Members who join and stay idle."), min=2)] = 5000,
    repeat: Annotated[int, typer.Option(help=_("Broadcasts timed, one after another."), min=1)] = 20,
    engine: Annotated[str, typer.Option(help=_("The server: one of our engines, or asyncio/uvloop."))] = "epoll",
    workers: Annotated[int, typer.Option(help=_("Load-generator processes."), min=1)] = 2,
    timeout: Annotated[float, typer.Option(help=_("Seconds joining or one broadcast may take."), min=1)] = 120.0,
    json: Annotated[bool, typer.Option("--json", help=_("Print one JSON document instead of the table."))] = False,
    cluster: Annotated[Optional[int], typer.Option(
        help=_("Compare 1 cluster node, N nodes on one port and N nodes on N ports, through a NATS "
               "server the benchmark starts (epoll nodes)."), show_default=False)] = None,
) -> None:
    from capstone.bench.scale import run_scale
    from capstone.bench.servers import parse_targets
    from lessons.toolkit.common import UserError

    if cluster is not None:
        scale_cluster(cluster, members, repeat, engine, workers, timeout, json)
        return
    targets = parse_targets(engine)
    if len(targets) != 1:
        raise UserError(_("scale measures one server at a time; give one --engine."))
    if targets[0] == "fork" and members > MAX_FORK_MEMBERS:
        raise UserError(_("the fork engine runs a process per member (about 1.5 MiB each); use at "
                          "most {most} --members with it.").format(most=MAX_FORK_MEMBERS))
    if json:
        report = run_scale(targets[0], members, repeat, workers, timeout)
        print_json({**report.as_json(), "machine": _machine()})
        return
    from rich.console import Console

    with Console(stderr=True).status(_("joining {members} members to {targets}...").format(members=members, targets=targets[0])):
        report = run_scale(targets[0], members, repeat, workers, timeout)
    show_scale(report)


def cluster_problem(cluster: int | None, engine: str, against: str | None, irc: int) -> str | None:
    """What is wrong with `learn bench chat --cluster N` as given (one sentence), or None."""
    from capstone.bench.cluster import ENGINE, size_problem

    if cluster is None:
        return None
    if size_problem(cluster):
        return size_problem(cluster)
    if against or engine != ENGINE or irc:
        return _("--cluster compares setups of {engine} nodes over the binary protocol; leave out "
                 "--against, --engine and --irc.").format(engine=ENGINE)
    return None


def scale_cluster(nodes: int, members: int, repeat: int, engine: str, workers: int, timeout: float,
                  json: bool) -> None:
    """`learn bench scale --cluster N`: the three setups in one run, one NATS server for all."""
    from capstone.bench.cluster import ENGINE, size_problem
    from capstone.bench.scale import run_scale_cluster
    from lessons.toolkit.common import UserError

    if size_problem(nodes):
        raise UserError(size_problem(nodes))
    if engine != ENGINE:
        raise UserError(_("--cluster runs {engine} nodes; leave out --engine.").format(engine=ENGINE))
    if json:
        report = run_scale_cluster(nodes, members, repeat, workers, timeout)
        print_json({**report.as_json(), "machine": _machine()})
        return
    from rich.console import Console

    with Console(stderr=True).status("") as status:
        report = run_scale_cluster(nodes, members, repeat, workers, timeout, on_setup=lambda name: status.update(
            _("joining {members} members to {setup}...").format(members=members, setup=name)))
    show_scale_cluster(report)


@app.command(help=_(
    "Stuck readers, a WHO flood and talkers against one server: a healthy member's PING, "
    "peak memory, who survived."))
def hostile(
    stuck: Annotated[int, typer.Option(help=_("Members who join and never read (32-emoji names)."), min=0)] = 1000,
    who: Annotated[int, typer.Option(help=_("WHO frames one member sends at once, never reading."), min=0)] = 13_000,
    talkers: Annotated[int, typer.Option(help=_("Members who each SAY 4 KB 20 times a second."), min=0)] = 1,
    duration: Annotated[float, typer.Option(help=_("Seconds the hostile clients are at work."), min=0.5)] = 20.0,
    engine: Annotated[str, typer.Option(help=_("Our engine: epoll, poll, select, selectors or fork."))] = "epoll",
    ping_interval: Annotated[float, typer.Option(
        help=_("Milliseconds between the healthy member's PINGs."), min=1)] = 20.0,
    max_queue: Annotated[Optional[int], typer.Option(
        help=_("Passed to the server when given (bytes queued for one reader)."), show_default=False)] = None,
    max_buffered: Annotated[Optional[int], typer.Option(
        help=_("Passed to the server when given (bytes queued for all readers)."), show_default=False)] = None,
    server_memory: Annotated[int, typer.Option(
        help=_("The server's address-space limit in MiB (RLIMIT_AS), so a bloating server fails "
               "instead of the machine; 0 = none."), min=0)] = 2048,
    timeout: Annotated[float, typer.Option(help=_("Seconds everyone may take to join."), min=1)] = 60.0,
    json: Annotated[bool, typer.Option("--json", help=_("Print one JSON document instead of the table."))] = False,
) -> None:
    from capstone.bench.hostile import HostileLoad, run_hostile
    from capstone.bench.servers import ENGINES
    from lessons.toolkit.common import UserError
    from lessons.toolkit.i18n import _

    if engine not in ENGINES:
        raise UserError(_("hostile measures our engines; choose one of {engines}.").format(engines=", ".join(ENGINES)))
    if engine == "fork" and stuck > MAX_FORK_MEMBERS:
        raise UserError(_("the fork engine runs a process per member (about 1.5 MiB each); "
                          "use at most {limit} --stuck with it.").format(limit=MAX_FORK_MEMBERS))
    load = HostileLoad(stuck=stuck, who=who, talkers=talkers, duration=duration, engine=engine,
                       ping_interval_ms=ping_interval, max_queue=max_queue, max_buffered=max_buffered,
                       server_memory_mib=server_memory, timeout=timeout)
    try:
        if json:
            report = run_hostile(load)
        else:
            from rich.console import Console

            with Console(stderr=True).status("") as status:
                report = run_hostile(load, on_phase=lambda text: status.update(text + "..."))
    except KeyboardInterrupt:
        stopped_by_ctrl_c(_("stopped the hostile benchmark before it finished; its server is stopped."))
    if json:
        print_json({**report.as_json(), "machine": _machine()})
        return
    show_hostile(report)


# -- output ------------------------------------------------------------------------------
def _machine() -> dict:
    from capstone.bench import machine_info

    return machine_info()


def print_json(document: dict) -> None:
    import json as json_module

    print(json_module.dumps(document, indent=2, ensure_ascii=False))


def show_multiplexers(report) -> None:  # noqa: ANN001 - multiplexers.Report
    from rich.console import Console
    from rich.table import Table

    from capstone.bench.multiplexers import MULTIPLEXERS

    console = Console()
    table = Table(title=_("us per wait call, 1 fd ready (median of {repeat})").format(repeat=report.repeat), title_justify="left")
    table.add_column("N watched", justify="right")
    for name in MULTIPLEXERS:
        table.add_column(name, justify="right", style=MULTIPLEXER_COLOURS[name])
    for row in report.rows:
        cells = [f"{row.micros[name]:.2f}" if row.micros[name] is not None else "-" for name in MULTIPLEXERS]
        table.add_row(f"{row.n:,}", *cells)
    console.print(table)
    console.print(log_bars(report))
    for note in report.notes:
        console.print("[dim]" + _("note:") + f"[/] {note}")
    console.print(_("[dim]select and poll hand the kernel the whole list on every call, so they "
                    "grow with N; epoll keeps the list in the kernel and returns only what is "
                    "ready, so it stays flat.[/]"))


def log_bars(report) -> object:  # noqa: ANN001
    """A bar per multiplexer and N, its length on a log scale (0.1 us to 10 ms across)."""
    import math

    from rich.text import Text

    from capstone.bench.multiplexers import MULTIPLEXERS

    width, low, high = 50, math.log10(0.1), math.log10(10_000)
    text = Text(_("wait-call cost, log scale: 0.1 us ... 10 ms\n"), style="bold")
    for row in report.rows:
        for name in MULTIPLEXERS:
            micros = row.micros[name]
            label = f"{row.n:>7,} {name:<9} "
            if micros is None:
                text.append(label + _("(cannot watch fds >= 1024)\n"), style="dim")
                continue
            fraction = (math.log10(max(micros, 0.1)) - low) / (high - low)
            text.append(label)
            text.append("█" * max(1, round(fraction * width)), style=MULTIPLEXER_COLOURS[name])
            text.append(f" {micros:.1f} us\n")
    return text


def compare_with_progress(load, repeat: int, measure):  # noqa: ANN001, ANN201
    """measure(on_run) (a compare) with a rich progress bar per run, on stderr so stdout stays the report."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        def finish_last_run() -> None:
            if progress.tasks:  # a run's last progress report may precede its final count
                last = progress.tasks[-1]
                progress.update(last.id, completed=last.total)
                progress.stop_task(last.id)

        def on_run(target: str, number: int):  # noqa: ANN202
            finish_last_run()
            label = target if repeat == 1 else f"{target} #{number + 1}"
            task = progress.add_task(label, total=load.expected_deliveries)
            return lambda done: progress.update(task, completed=done)

        comparison = measure(on_run)
        finish_last_run()
    return comparison


def chat_json(comparison) -> dict:  # noqa: ANN001
    from dataclasses import asdict

    results = []
    for measurement in comparison.results:
        entry = asdict(measurement)
        entry["ratio_to_baseline"] = comparison.ratio(measurement)
        entry["runs_deliveries_per_second"] = comparison.runs[measurement.target]
        results.append(entry)
    return {
        "benchmark": "chat",
        "machine": _machine(),
        "load": {**asdict(comparison.load), "expected_deliveries": comparison.load.expected_deliveries},
        "baseline": comparison.baseline,
        "results": results,
        "skipped": comparison.skipped,
    }


def show_chat(comparison) -> None:  # noqa: ANN001
    from rich.markup import escape
    from rich.table import Table

    load = comparison.load
    console = wide_console()
    title = (_("{clients} members, {senders} senders x {messages} messages of {size} bytes = "
               "{deliveries:,} deliveries").format(clients=load.clients, senders=load.senders, messages=load.messages, size=load.size, deliveries=load.expected_deliveries))
    if load.irc:
        title += _(", {count} members on IRC").format(count=load.irc)
    table = Table(title=title, title_justify="left")
    columns = (_("server"), _("deliveries/s"), f"x {comparison.baseline}", _("us/delivery"),
               "p50 ms", "p99 ms", _("max ms"), _("lost"), _("order"), "MiB", _("gen busy"))
    for number, column in enumerate(columns):
        table.add_column(column, justify="left" if number == 0 else "right", no_wrap=True)
    for m in comparison.results:
        ratio = comparison.ratio(m)
        memory = f"{m.server_pss_kib / 1024:.1f}" + ("*" if m.server_processes > 1 else "")
        table.add_row(
            m.target, f"{m.deliveries_per_second:,.0f}", "-" if ratio is None else f"{ratio:.2f}",
            f"{m.server_cpu_us_per_delivery:.2f}", f"{m.latency_ms['p50']:.1f}", f"{m.latency_ms['p99']:.1f}",
            f"{m.latency_ms['max']:.1f}", style_count(m.lost), style_count(m.order_violations), memory,
            f"{m.generator_busy:.0%}",
        )
    console.print(table)
    for target, why in comparison.skipped.items():
        console.print("[yellow]" + _("skipped {target}:").format(target=target) + f"[/] {escape(why)}")
    for m in comparison.results:
        for error in m.errors[:3]:
            console.print(f"[red]{m.target}:[/] {escape(error)}")
    if comparison.baseline != "epoll":  # learn bench chat --cluster N
        console.print(_("[dim]x 1 node: deliveries/s relative to one cluster node. Every setup goes "
                        "through NATS: each SAY is one acknowledged publish, then every node reads it "
                        "back and sends it to its own members. us/delivery and MiB: all nodes together "
                        "(nats-server not counted). gen busy: near 100% the load generator, not the "
                        "nodes, set the rate (the generator, the nodes and nats-server share this "
                        "machine's cores).[/]"))
        return
    console.print(
        _("[dim]x epoll: deliveries/s relative to our default engine. us/delivery: the server's "
          "CPU time per delivery, children included (fair even when the generator is the limit). "
          "MiB: PSS of the server (* and its child processes) with every member connected. gen "
          "busy: the load generator's CPU over its wall time per worker; near 100% the generator, "
          "not the server, set the rate (they share this machine's cores). Latency with --rate 0 "
          "is mostly queueing: use --rate to measure it unloaded.[/]")
    )


def wide_console():  # noqa: ANN201
    """A console that does not squeeze the table to 80 columns when the output is a file."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=140)


def style_count(count: int) -> str:
    return f"[green]{count}[/]" if count == 0 else f"[bold red]{count}[/]"


def show_scale(report) -> None:  # noqa: ANN001 - scale.ScaleReport
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=_("{members:,} idle members on {target}: one broadcast at a time").format(members=report.members, target=report.target),
                  title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(_("time to join everyone"), f"{report.join_seconds:.2f} s")
    for key in ("p50", "p99", "max"):
        table.add_row(_("broadcast reaches all members, {percent} of {repeat}").format(percent=key, repeat=report.repeat), f"{report.broadcast_ms[key]:.1f} ms")
    table.add_row(_("server CPU for one broadcast (median)"), f"{report.server_cpu_ms_per_broadcast:.1f} ms")
    table.add_row(_("receivers' CPU for one broadcast (median, all workers)"), f"{report.receivers_cpu_ms_per_broadcast:.1f} ms")
    if report.send_floor_ms is not None:
        table.add_row(_("floor: a bare loop of {members:,} send() calls").format(members=report.members), f"{report.send_floor_ms:.1f} ms")
    table.add_row(_("server memory before joining (RSS)"), f"{report.rss_before_kib / 1024:.1f} MiB")
    table.add_row(_("server memory with everyone joined (RSS)"), f"{report.rss_after_kib / 1024:.1f} MiB")
    table.add_row(_("server memory per member"), f"{report.kib_per_member:.2f} KiB")
    console.print(table)
    for note in report.notes:
        console.print("[dim]" + _("note:") + f"[/] {note}")


def show_scale_cluster(report) -> None:  # noqa: ANN001 - scale.ClusterScaleReport
    from rich.table import Table

    console = wide_console()
    repeat = report.setups[0].repeat
    table = Table(title=_("{members:,} idle members, one broadcast at a time ({repeat} timed), through NATS").format(
        members=report.members, repeat=repeat), title_justify="left")
    columns = (_("setup"), _("join s"), "p50 ms", "p99 ms", _("max ms"), _("x 1 node"),
               _("server CPU ms"), _("busiest node ms"), _("receivers ms"), _("KiB/member"))
    for number, column in enumerate(columns):
        table.add_column(column, justify="left" if number == 0 else "right", no_wrap=True)
    for setup in report.setups:
        ms = setup.broadcast_ms
        table.add_row(setup.target, f"{setup.join_seconds:.1f}", f"{ms['p50']:.1f}", f"{ms['p99']:.1f}",
                      f"{ms['max']:.1f}", f"{report.ratio(setup):.2f}", f"{setup.server_cpu_ms_per_broadcast:.1f}",
                      f"{setup.busiest_node_cpu_ms_per_broadcast:.1f}",
                      f"{setup.receivers_cpu_ms_per_broadcast:.1f}", f"{setup.kib_per_member:.2f}")
    console.print(table)
    console.print(_(
        "[dim]x 1 node: the median time for one broadcast to reach every member, over one node's (below 1: "
        "faster). Every setup goes through NATS: the node that takes the SAY publishes it and every node "
        "reads it back, then sends it to its own members. server CPU: all nodes together, per broadcast "
        "(nats-server not included); busiest node: the CPU of the node that worked most, what a broadcast "
        "needs at least when every node has a core of its own; receivers: the load generator's CPU to "
        "read one broadcast, on the same cores. With one port the kernel spreads the "
        "connections, not exactly evenly.[/]"))


def stopped_by_ctrl_c(line: str) -> None:
    """One calm line on a fresh line (not glued to the echoed ^C), then exit 130."""
    import sys

    sys.stderr.write(("\n" if sys.stderr.isatty() else "") + line + "\n")
    raise typer.Exit(130)


def show_hostile(report) -> None:  # noqa: ANN001 - hostile.HostileReport
    from rich.markup import escape
    from rich.table import Table

    from lessons.toolkit.i18n import _, ngettext

    console = wide_console()
    title = _("{stuck}, {who}, {talkers}, {seconds:g} s on {engine}").format(
        stuck=ngettext("{n:,} stuck reader", "{n:,} stuck readers", report.stuck).format(n=report.stuck),
        who=ngettext("{n:,} WHO frame", "{n:,} WHO frames", report.who).format(n=report.who),
        talkers=ngettext("{n} talker", "{n} talkers", report.talkers).format(n=report.talkers),
        seconds=report.duration, engine=report.target)
    table = Table(title=title, title_justify="left")
    for column in (_("measure"), _("value"), _("target"), _("verdict")):
        table.add_column(column, justify="left" if column == _("measure") else "right")
    for row in hostile_rows(report):
        table.add_row(*row)
    console.print(table)
    for note in report.notes:
        console.print(f"[dim]{escape(_('note:'))}[/] {escape(note)}")
    if report.server_last_error and (report.server_exit_code or not report.server_alive):
        console.print(escape(_("the server's last words on stderr: {line}").format(line=report.server_last_error)))


def hostile_rows(report) -> list[tuple[str, str, str, str]]:  # noqa: ANN001
    """measure, value, target, verdict: the targets of the hardening issue beside what was measured."""
    from lessons.toolkit.i18n import _

    def verdict(met: bool) -> str:
        return f"[green]{_('met')}[/]" if met else f"[bold red]{_('missed')}[/]"

    def yes_no(value: bool, good: bool) -> str:
        word = _("yes") if value else _("no")
        return f"[green]{word}[/]" if value == good else f"[bold red]{word}[/]"

    ping, mib = report.ping_ms, report.peak_rss_kib / 1024
    if report.healthy_dropped_after is None:
        healthy = yes_no(True, True)
    else:
        healthy = "[bold red]" + _("no: dropped after {seconds:.1f} s").format(seconds=report.healthy_dropped_after) + "[/]"
    return [
        (_("time for the stuck readers to join"), f"{report.join_seconds:.1f} s", "", ""),
        (_("stuck readers let in"), f"{report.stuck_joined:,} / {report.stuck:,}", "", ""),
        (_("healthy PING round trip, p50"), f"{ping['p50']:.1f} ms", "", ""),
        (_("healthy PING round trip, p99"), f"{ping['p99']:.1f} ms", f"< {report.targets['ping_p99_ms']:g} ms",
         verdict(report.ping_met)),
        (_("healthy PING round trip, max"), f"{ping['max']:.1f} ms", "", ""),
        (_("PINGs sent / answered / refused / unanswered"),
         f"{report.pings_sent:,} / {report.pongs:,} / {report.pings_refused:,} / {report.pings_unanswered:,}", "", ""),
        (_("server peak memory (RSS)"), f"{mib:.1f} MiB", f"< {report.targets['peak_rss_mib']:g} MiB",
         verdict(report.peak_rss_met)),
        (_("kernel TCP buffers, whole machine: peak rise"), f"{report.kernel_tcp_rise_kib / 1024:.1f} MiB", "", ""),
        (_("stuck readers dropped by the server"), f"{report.stuck_dropped:,} / {report.stuck_joined:,}", "", ""),
        (_("WHO frames written / flooder dropped"), f"{report.who_written:,} / "
         + (_("yes") if report.flooder_dropped else _("no")), "", ""),
        (_("talkers dropped"), f"{report.talkers_dropped} / {report.talkers}", "", ""),
        (_("healthy member still connected"), healthy, "", ""),
        (_("server alive at the end"), yes_no(report.server_alive, True), "", ""),
        (_("server answers a new connection's PING"), yes_no(report.server_answering, True), "", ""),
        (_("server's exit code") + " " + (_("(on our SIGTERM)") if report.server_alive else _("(it died)")),
         exit_text(report.server_exit_code), "", ""),
    ]


def exit_text(code: int | None) -> str:
    """0, 1, ... as they are; a negative return code is the signal that ended the process."""
    import signal

    from lessons.toolkit.i18n import _

    if code is None or code >= 0:
        return str(code)
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = str(-code)
    return _("killed by {signal}").format(signal=name)
