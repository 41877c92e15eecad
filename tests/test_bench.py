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

from capstone.bench.load import Load, latency_summary, total_order_violations
from capstone.bench.multiplexers import FD_SETSIZE, MULTIPLEXERS
from capstone.bench.multiplexers import run as run_multiplexers

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


@pytest.mark.timeout(60)
def test_multiplexers_json_has_a_row_per_size() -> None:
    report = json_of(learn("bench", "multiplexers", "--max-fds", "100", "--repeat", "50", "--json"))
    assert report["benchmark"] == "multiplexers"
    assert [row["n"] for row in report["rows"]] == [10, 30, 100]
    for row in report["rows"]:
        assert set(row["micros"]) == set(MULTIPLEXERS)
        assert all(value > 0 for value in row["micros"].values())
    assert {"cores", "cpu", "kernel", "python"} <= set(report["machine"])


@pytest.mark.timeout(60)
def test_multiplexers_table_and_chart() -> None:
    result = learn("bench", "multiplexers", "--max-fds", "30", "--repeat", "20")
    assert result.returncode == 0, result.stderr
    assert "epoll" in result.stdout and "log scale" in result.stdout


@pytest.mark.timeout(60)
def test_select_stops_at_fd_setsize_and_says_why() -> None:
    report = run_multiplexers(max_fds=FD_SETSIZE + 50, repeat=5)
    last = report.rows[-1]
    assert last.n == FD_SETSIZE + 50
    assert last.micros["select"] is None and last.micros["epoll"] is not None
    assert any("FD_SETSIZE" in note for note in report.notes)


@pytest.mark.timeout(60)
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


@pytest.mark.timeout(60)
def test_tiny_chat_against_the_asyncio_peer() -> None:
    check_tiny_chat("asyncio")


@pytest.mark.timeout(60)
def test_tiny_chat_against_the_uvloop_peer() -> None:
    pytest.importorskip("uvloop")
    check_tiny_chat("uvloop")


@pytest.mark.timeout(60)
def test_tiny_chat_against_our_default_engine() -> None:
    assert check_tiny_chat("epoll")["ratio_to_baseline"] == 1.0


@pytest.mark.timeout(60)
def test_tiny_chat_against_the_fork_engine_counts_its_children() -> None:
    assert check_tiny_chat("fork")["server_processes"] > 1


@pytest.mark.timeout(60)
def test_tiny_chat_paced_with_a_table() -> None:
    result = learn("bench", "chat", *TINY_CHAT, "--rate", "200")
    assert result.returncode == 0, result.stderr
    assert "epoll" in result.stdout and "deliveries/s" in result.stdout


@pytest.mark.timeout(60)
def test_tiny_scale_run() -> None:
    report = json_of(learn("bench", "scale", "--members", "20", "--repeat", "3", "--json"))
    assert report["benchmark"] == "scale" and report["members"] == 20
    assert len(report["samples_ms"]) == 3
    assert set(report["broadcast_ms"]) == {"p50", "p99", "max"}
    assert report["rss_after_kib"] > 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args, words", [
    (["chat", "--against", "nosuch"], "unknown server"),
    (["chat", "--size", "10"], "--size"),
    (["chat", "--clients", "3", "--senders", "5"], "--senders"),
    (["scale", "--engine", "epoll,poll"], "one server at a time"),
    (["scale", "--engine", "fork", "--members", "5000"], "process per member"),
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
