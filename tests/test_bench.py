"""`learn bench`: the benchmarks run on a tiny load and say what they measured, well formed.

No timing is asserted (this machine is shared and small); what is asserted is what must
hold on any machine: the JSON parses and has its keys, nothing is lost or reordered on
a tiny chat run, select's row stops at FD_SETSIZE, bad options get one sentence and
exit 2. The order checker itself is tested on made-up orders, so it is known to fail
when it should.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from array import array

import pytest

from capstone.bench.load_spec import Load
from capstone.bench.multiplexers import FD_SETSIZE, MULTIPLEXERS
from capstone.bench.multiplexers import run as run_multiplexers
from capstone.bench.stats import latency_summary, total_order_violations

TINY_CHAT = ["--clients", "6", "--senders", "3", "--messages", "10", "--size", "40", "--repeat", "1"]
MEASUREMENT_KEYS = {
    "target", "deliveries", "expected", "lost", "order_violations", "wall_seconds",
    "deliveries_per_second", "latency_ms", "server_peak_rss_kib", "server_pss_kib",
    "server_cpu_us_per_delivery", "generator_cpu_seconds", "generator_busy", "ratio_to_baseline",
}


def learn(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m lessons ...` in its own session, so a hang cannot leak the servers it started."""
    process = subprocess.Popen([sys.executable, "-m", "lessons", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever it left behind (normally nothing)
        except ProcessLookupError:
            pass
        process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def json_of(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # the whole of stdout is one document


def test_multiplexers_json_has_a_row_per_size() -> None:
    report = json_of(learn("bench", "multiplexers", "--max-fds", "100", "--repeat", "50", "--json"))
    assert report["benchmark"] == "multiplexers"
    assert [row["n"] for row in report["rows"]] == [10, 30, 100]
    for row in report["rows"]:
        assert set(row["micros"]) == set(MULTIPLEXERS)
        assert all(value > 0 for value in row["micros"].values())
    assert {"cores", "cpu", "kernel", "python"} <= set(report["machine"])


def test_multiplexers_table_and_chart() -> None:
    result = learn("bench", "multiplexers", "--max-fds", "30", "--repeat", "20")
    assert result.returncode == 0, result.stderr
    assert "epoll" in result.stdout and "log scale" in result.stdout


def test_select_stops_at_fd_setsize_and_says_why() -> None:
    report = run_multiplexers(max_fds=FD_SETSIZE + 50, repeat=5)
    last = report.rows[-1]
    assert last.n == FD_SETSIZE + 50
    assert last.micros["select"] is None and last.micros["epoll"] is not None
    assert any("FD_SETSIZE" in note for note in report.notes)


def test_open_file_limit_caps_n_and_says_so() -> None:
    """In a child whose hard limit is 300, asking for 1000 descriptors measures fewer and says why."""
    code = (
        "import json, resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (100, 300))\n"
        "from capstone.bench.multiplexers import run\n"
        "report = run(max_fds=1000, repeat=5)\n"
        "print(json.dumps(report.as_json()))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    report = json.loads(result.stdout)
    assert report["fd_limit"] == 300 and report["max_fds"] < 300
    assert report["rows"][-1]["n"] == report["max_fds"]
    assert any("caps N" in note for note in report["notes"])


def check_tiny_chat(target: str) -> dict:
    report = json_of(learn("bench", "chat", *TINY_CHAT, "--against", target, "--json"))
    assert report["benchmark"] == "chat" and report["load"]["expected_deliveries"] == 3 * 10 * 5
    (result,) = report["results"]
    assert MEASUREMENT_KEYS <= set(result)
    assert result["target"] == target
    assert result["deliveries"] == result["expected"] == 150
    assert result["lost"] == 0 and result["order_violations"] == 0, result["errors"]
    assert set(result["latency_ms"]) == {"p50", "p99", "max"}
    assert result["server_peak_rss_kib"] > 0
    return result


def test_tiny_chat_against_the_asyncio_peer() -> None:
    check_tiny_chat("asyncio")


def test_tiny_chat_against_the_uvloop_peer() -> None:
    pytest.importorskip("uvloop")
    check_tiny_chat("uvloop")


def test_tiny_chat_against_our_default_engine() -> None:
    assert check_tiny_chat("epoll")["ratio_to_baseline"] == 1.0


def test_tiny_chat_against_the_fork_engine_counts_its_children() -> None:
    assert check_tiny_chat("fork")["server_processes"] > 1


def test_tiny_chat_with_irc_members_mixed_in_loses_nothing_and_skips_the_peers() -> None:
    report = json_of(learn("bench", "chat", *TINY_CHAT, "--irc", "3", "--against", "asyncio,epoll", "--json"))
    (result,) = report["results"]
    assert report["load"]["irc"] == 3 and "asyncio" in report["skipped"]
    assert result["deliveries"] == result["expected"] == 150
    assert result["lost"] == 0 and result["order_violations"] == 0, result["errors"]


def test_tiny_chat_paced_with_a_table() -> None:
    result = learn("bench", "chat", *TINY_CHAT, "--rate", "200")
    assert result.returncode == 0, result.stderr
    assert "epoll" in result.stdout and "deliveries/s" in result.stdout


def test_tiny_scale_run() -> None:
    report = json_of(learn("bench", "scale", "--members", "20", "--repeat", "3", "--json"))
    assert report["benchmark"] == "scale" and report["members"] == 20
    assert len(report["samples_ms"]) == 3
    assert set(report["broadcast_ms"]) == {"p50", "p99", "max"}
    assert report["rss_after_kib"] > 0


CLUSTER_SETUPS = ("1 node", "2 nodes, one port", "2 nodes, 2 ports")


def test_tiny_cluster_scale_run_prints_all_three_setups() -> None:
    """One NATS server, a fresh room per setup: the table has a row for each and the ratio."""
    result = learn("bench", "scale", "--cluster", "2", "--members", "6", "--repeat", "2")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]  # the table's body
    assert [row.split("│")[1].strip() for row in rows] == list(CLUSTER_SETUPS)
    assert "1.00" in rows[0]  # 1 node's ratio to itself


@pytest.mark.parametrize("args, words", [
    (["chat", "--against", "nosuch"], "unknown server"),
    (["chat", "--size", "10"], "--size"),
    (["chat", "--clients", "3", "--senders", "5"], "--senders"),
    (["chat", "--clients", "4", "--senders", "2", "--irc", "3"], "--irc"),
    (["chat", "--irc", "1", "--size", "401"], "--size"),
    (["scale", "--engine", "epoll,poll"], "one server at a time"),
    (["scale", "--engine", "fork", "--members", "5000"], "process per member"),
    (["scale", "--cluster", "1"], "at least 2"),
    (["scale", "--cluster", "2", "--engine", "poll"], "leave out --engine"),
    (["chat", "--cluster", "0"], "at least 2"),
    (["chat", "--cluster", "2", "--against", "asyncio"], "leave out --against"),
])
def test_bad_options_get_one_sentence(args: list[str], words: str) -> None:
    result = learn("bench", *args)
    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr


def test_load_check_accepts_the_defaults() -> None:
    assert Load().check() is None
    assert Load().expected_deliveries == 20 * 200 * 99


def test_order_checker_finds_a_swap_between_two_members() -> None:
    same = {0: array("l", [1, 2, 3, 4]), 1: array("l", [1, 2, 3, 4])}
    assert total_order_violations(same) == 0
    swapped = {0: array("l", [1, 2, 3, 4]), 1: array("l", [1, 3, 2, 4])}
    assert total_order_violations(swapped) == 3  # 2 and 3 contradict, 4 comes after them


def test_order_checker_allows_senders_to_miss_their_own() -> None:
    # member 0 sent 7, member 1 sent 5: each sees the one order 5, 7, 6 minus its own
    assert total_order_violations({0: array("l", [5, 6]), 1: array("l", [7, 6]), 2: array("l", [5, 7, 6])}) == 0


def test_order_checker_when_everyone_sends() -> None:
    # three senders, one message each (a=1, b=2, c=3); pairwise fine, together a cycle a<c<b<a
    orders = {0: array("l", [3, 2]), 1: array("l", [1, 3]), 2: array("l", [2, 1])}
    assert total_order_violations(orders) == 3


def test_latency_summary_in_milliseconds() -> None:
    summary = latency_summary(array("q", [1_000_000 * value for value in range(1, 101)]))
    assert summary == {"p50": 51.0, "p99": 100.0, "max": 100.0}


# -- learn bench hostile -------------------------------------------------------------------
TINY_HOSTILE = ["--stuck", "20", "--who", "200", "--duration", "1.5"]
HOSTILE_ROWS = (
    "healthy PING round trip, p50", "healthy PING round trip, p99", "healthy PING round trip, max",
    "server peak memory (RSS)", "kernel TCP buffers", "stuck readers dropped by the server", "WHO frames written / flooder dropped",
    "talkers dropped", "healthy member still connected", "server alive at the end",
    "server answers a new connection's PING",
)


def test_tiny_hostile_run_prints_the_table_with_the_targets() -> None:
    result = learn("bench", "hostile", *TINY_HOSTILE, "--max-queue", str(1 << 20))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for label in HOSTILE_ROWS:
        assert any(label in line for line in lines), label
    p99 = next(line for line in lines if "round trip, p99" in line)
    memory = next(line for line in lines if "peak memory" in line)
    assert "< 100 ms" in p99 and ("met" in p99 or "missed" in p99)
    assert "< 256 MiB" in memory and ("met" in memory or "missed" in memory)
    alive = next(line for line in lines if "server alive at the end" in line)
    assert "yes" in alive
    assert "this run is smaller" in result.stdout  # the targets are for the scale


def test_tiny_hostile_run_json_says_the_server_survived() -> None:
    report = json_of(learn("bench", "hostile", *TINY_HOSTILE, "--talkers", "2", "--json"))
    assert report["benchmark"] == "hostile" and report["target"] == "epoll"
    assert report["stuck_joined"] == 20 and report["who_written"] == 200
    assert report["server_options"] == []  # nothing passed that was not asked for
    assert report["server_alive"] and report["server_answering"] and report["healthy_dropped_after"] is None
    assert report["server_exit_code"] == 0  # on our SIGTERM, as the contract says
    assert report["pongs"] > 0 and report["pings_sent"] >= report["pongs"]
    assert set(report["ping_ms"]) == {"p50", "p99", "max"}
    assert report["peak_rss_kib"] > 0 and report["kernel_tcp_rise_kib"] >= 0
    assert report["targets"] == {"peak_rss_mib": 256, "ping_p99_ms": 100.0}
    assert set(report["met"]) == {"peak_rss", "ping_p99"}
    assert {"cores", "cpu", "kernel", "python"} <= set(report["machine"])


@pytest.mark.parametrize("args, words", [
    (["hostile", "--engine", "asyncio"], "our engines"),
    (["hostile", "--engine", "fork", "--stuck", "5000"], "process per member"),
    (["hostile", "--stuck", "-1"], "--stuck"),
])
def test_hostile_bad_options_get_one_sentence(args: list[str], words: str) -> None:
    result = learn("bench", *args)
    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr


def test_hostile_says_when_the_descriptor_limit_is_too_low() -> None:
    """A hard open-file limit of 300 cannot hold 1,000 stuck readers: one sentence, exit 2, no server."""
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (100, 300))\n"
        "sys.argv = ['learn', 'bench', 'hostile', '--stuck', '1000']\n"
        "from lessons.cli import main\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    assert result.returncode == 2, result.stderr
    assert "hard open-file limit is 300" in result.stderr and "--stuck" in result.stderr


def test_hostile_passes_server_limits_only_when_given() -> None:
    from capstone.bench.hostile import HostileLoad

    assert HostileLoad().server_options() == ()
    assert HostileLoad(max_queue=65536).server_options() == ("--max-queue", "65536")
    assert HostileLoad(max_buffered=1 << 26).server_options() == ("--max-buffered", str(1 << 26))


def test_stuck_readers_names_are_32_distinct_valid_emoji() -> None:
    from capstone.bench.hostile import emoji_names
    from capstone.names import name_key, normalize, why_invalid

    names = emoji_names(1000)
    assert len({name_key(normalize(name.decode())) for name in names}) == 1000
    for name in names:
        text = name.decode()
        assert len(text) == 32 and len(name) == 128  # four UTF-8 bytes per emoji
        assert normalize(text) == text and why_invalid(text) is None
    assert sum(len(name) + 1 for name in names) > 100_000  # one MEMBERS reply: over 100 KB


def test_healthy_member_counts_pongs_leaves_and_refusals() -> None:
    """The healthy member's bookkeeping on made-up frames: PONGs by their stamp, a refused
    PING settles the oldest one owed, LEFT names are collected."""
    import socket as socket_module

    from capstone.bench.hostile import PING_STAMP, Healthy
    from capstone.codec import ErrorCode, Kind, encode, encode_error

    left, right = socket_module.socketpair()
    try:
        healthy = Healthy(left)
        first, second, third = (healthy.ping_frame() for _ in range(3))
        pong = encode(Kind.PONG, second[5:])  # the second PING answered first
        stream = (pong + encode_error(ErrorCode.RATE_LIMITED, "slow down")
                  + encode(Kind.JOINED, b"ann") + encode(Kind.LEFT, b"ann") + encode(Kind.MESSAGE, b"\x03annhi"))
        healthy.on_data(stream[:7])  # frames split anywhere
        healthy.on_data(stream[7:])
        assert len(healthy.round_trips) == 1 and healthy.refused == 1
        assert list(healthy.owed) == [2]  # PING 0 refused, PING 1 answered, PING 2 still owed
        assert healthy.joined == {b"ann"} and healthy.left == {b"ann"}
        assert PING_STAMP.unpack(third[5:])[0] == 2
        assert len(healthy.waits_ns(healthy.owed[2] + 7_000_000)) == 2
    finally:
        left.close()
        right.close()
