"""struct-send / struct-recv: the notes' receiver fails on merged and split streams, the fixed ones do not.

Everything runs over real loopback TCP on port 0: in-process (receiver thread, sender
here) for the receivers' logic, and as `python -m lessons` processes for the CLI.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from lessonrun import child_env, default_sigint

from lessons.toolkit.common import open_listener
from lessons.toolkit.framing import LENGTH_HEADER, encode_frame
from lessons.toolkit.record import WIRE_RECORD, Record, decode, encode, sample_records
from lessons.struct_recv import Outcome, Scenario, delivered, run_scenario, serve_one
from lessons.struct_send import PIECE_SIZE, Framing, Mode, chunks_to_send

DEADLINE = 30.0


class Log(list):
    """A narrator that keeps (tag, text) pairs instead of printing them."""

    def __call__(self, tag: str, text: str) -> None:
        self.append((tag, text))


@pytest.fixture
def listener():
    with open_listener("127.0.0.1", 0) as sock:
        sock.settimeout(DEADLINE)  # a receiver thread never waits forever for its sender
        yield sock


def run(listener: socket.socket, mode: Mode, receiver: str, count: int = 2) -> tuple[Outcome, list[Record]]:
    return run_scenario(listener, Scenario(mode, receiver, count, "test"), Log())


# ---------------------------------------------------------------- the receivers, in process

@pytest.mark.parametrize("mode", [Mode.merged, Mode.split])
def test_the_notes_receiver_fails_on_merged_and_split_streams(listener, mode):
    outcome, records = run(listener, mode, "naive")
    assert not delivered(outcome, records)
    assert "struct.error" in outcome.error
    assert outcome.recv_sizes[0] != WIRE_RECORD.size  # the first recv() was not one record
    assert len(outcome.records) < len(records)


def test_the_notes_receiver_works_for_one_record_in_one_send(listener):
    outcome, records = run(listener, Mode.plain, "naive", count=1)
    assert delivered(outcome, records)
    assert outcome.recv_sizes == [WIRE_RECORD.size]


@pytest.mark.parametrize("receiver", ["fixed", "length"])
@pytest.mark.parametrize("mode", list(Mode))
def test_the_fixed_receivers_get_every_record_however_it_is_sent(listener, mode, receiver):
    outcome, records = run(listener, mode, receiver, count=3)
    assert outcome.error is None
    assert delivered(outcome, records)
    assert [record.number for record in outcome.records] == [1, 2, 3]


def test_split_mode_cuts_records_where_no_record_ends():
    """Why the naive failure is certain in split mode: no prefix of the pieces is exactly one record."""
    pieces = chunks_to_send(sample_records(2), Mode.split, Framing.fixed)
    assert all(len(piece) <= PIECE_SIZE for piece in pieces) and len(pieces) > 2
    prefix_sizes = {sum(map(len, pieces[:n])) for n in range(1, len(pieces) + 1)}
    assert WIRE_RECORD.size not in prefix_sizes
    assert chunks_to_send(sample_records(2), Mode.merged, Framing.fixed) == [b"".join(pieces)]


def test_what_comes_back_from_i5sf():
    """NUL padding, the silent cut, float32 rounding: the demo's claims, checked."""
    assert WIRE_RECORD.size == 13
    assert decode(encode(Record(2, b"li", 1.75))) == (2, b"li\x00\x00\x00", 1.75)
    assert decode(encode(Record(3, b"wangwu", 3.14))) == (3, b"wangw", 3.140000104904175)


def talk_raw(listener: socket.socket, receiver: str, data: bytes) -> Outcome:
    """A misbehaving sender: raw bytes, then close. Returns what the receiver made of it."""
    results: list[Outcome] = []
    thread = threading.Thread(target=lambda: results.append(serve_one(listener, receiver, Log())), daemon=True)
    thread.start()
    with socket.create_connection(listener.getsockname()[:2], timeout=DEADLINE) as sock:
        sock.sendall(data)
    thread.join(DEADLINE)
    return results[0]


def test_a_record_cut_by_the_end_of_the_stream_is_reported(listener):
    outcome = talk_raw(listener, "fixed", encode(Record(1, b"a", 1.0)) + b"\x00" * 7)
    assert [record.number for record in outcome.records] == [1]
    assert "middle of a record" in outcome.error and "7 of 13" in outcome.error


@pytest.mark.parametrize("data, complaint", [
    (LENGTH_HEADER.pack(1_000_000), "not a record frame"),  # announces far more than a record
    (encode_frame(b"short"), "not a record frame"),  # a frame too short to be a record
    (encode_frame(encode(Record(1, b"a", 1.0)))[:-3], "unfinished frame"),
])
def test_the_length_receiver_refuses_bad_frames(listener, data, complaint):
    outcome = talk_raw(listener, "length", data)
    assert complaint in outcome.error


# ---------------------------------------------------------------- the CLI, as processes


class Running:
    """A `python -m lessons run ...` process; its stdout lines are collected as they arrive."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lessons", "run", *args], env=env or child_env(),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
            preexec_fn=default_sigint,
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._collect, daemon=True)
        self.reader.start()

    def _collect(self) -> None:
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = DEADLINE) -> re.Match:
        """The first output line matching `pattern`, waiting for it with a deadline (never a sleep)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines:
                    if match := re.search(pattern, line):
                        return match
                if not self.reader.is_alive():
                    pytest.fail(f"exited without printing {pattern!r}:\n{self.output}\n{self.process.stderr.read()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no line matching {pattern!r} within {timeout} s:\n{self.output}")
                self.changed.wait(0.1)

    def finish(self, timeout: float = DEADLINE) -> tuple[int, str, str]:
        code = self.process.wait(timeout)
        self.reader.join(timeout)
        return code, self.output, self.process.stderr.read()

    @property
    def output(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(DEADLINE)
        for stream in (self.process.stdout, self.process.stderr):
            stream.close()


@pytest.fixture
def start():
    running: list[Running] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Running:
        running.append(Running(*args, env=env))
        return running[-1]

    yield start
    for process in running:
        process.stop()


def run_lesson(*args: str, timeout: float = DEADLINE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lessons", "run", *args], env=child_env(),
                          capture_output=True, text=True, encoding="utf-8", timeout=timeout)


def listening_port(receiver: Running) -> str:
    return receiver.wait_for(r"^listening on 127\.0\.0\.1:(\d+)$").group(1)


@pytest.mark.parametrize("mode", ["merged", "split"])
def test_cli_naive_receiver_fails_and_says_why(start, mode):
    receiver = start("struct-recv", "--port", "0", "--naive", "--once")
    sender = run_lesson("struct-send", "--port", listening_port(receiver), "--mode", mode)
    assert sender.returncode == 0, sender.stderr
    code, out, err = receiver.finish()
    assert code == 0, err
    assert "naive receiver gave up" in out and "struct.error" in out
    assert "Traceback" not in out + err


@pytest.mark.parametrize("framing", ["fixed", "length"])
@pytest.mark.parametrize("mode", ["merged", "split"])
def test_cli_fixed_receivers_get_both_records(start, mode, framing):
    receiver = start("struct-recv", "--port", "0", "--framing", framing, "--once")
    sender = run_lesson("struct-send", "--port", listening_port(receiver), "--mode", mode, "--framing", framing,
                        "--pause", "0.01")
    assert sender.returncode == 0, sender.stderr
    code, out, err = receiver.finish()
    assert code == 0, err
    assert "2 records from 127.0.0.1:" in out
    assert "record number=2 name=b'li\\x00\\x00\\x00'" in out
    assert "gave up" not in out


def test_cli_receiver_survives_bad_senders_and_stops_on_ctrl_c(start):
    receiver = start("struct-recv", "--port", "0")
    port = int(listening_port(receiver))
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        sock.sendall(b"\x00" * 7)  # half a record, then away
    receiver.wait_for(r"gave up on .*7 of 13 bytes")
    socket.create_connection(("127.0.0.1", port), timeout=DEADLINE).close()  # connects, sends nothing
    receiver.wait_for(r"0 records from")
    sender = run_lesson("struct-send", "--port", str(port), "--mode", "split", "--pause", "0.01")
    assert sender.returncode == 0, sender.stderr
    receiver.wait_for(r"2 records from")
    receiver.process.send_signal(signal.SIGINT)
    code, out, err = receiver.finish()
    assert code == 0 and "stopped" in out
    assert "Traceback" not in out + err


def assert_one_sentence(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert fragment in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_cli_sender_with_nobody_listening_is_one_sentence():
    with socket.socket() as bound_not_listening:  # holds a port on which connect() is refused
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]
        assert_one_sentence(run_lesson("struct-send", "--port", str(port)), "nothing is listening")


def test_cli_receiver_port_in_use_is_one_sentence():
    with open_listener("127.0.0.1", 0) as holder:
        port = holder.getsockname()[1]
        assert_one_sentence(run_lesson("struct-recv", "--port", str(port)), "already in use")


@pytest.mark.parametrize("args, fragment", [
    (("struct-recv", "--naive", "--framing", "length"), "--naive"),
    (("struct-send", "--count", "0"), "--count"),
    (("struct-send", "--pause", "9"), "--pause"),
])
def test_cli_bad_options_are_one_sentence(args, fragment):
    assert_one_sentence(run_lesson(*args), fragment)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "0"])
def test_cli_sender_refuses_every_address_as_tcp_client_does(host):
    """One rule for every client (lessons.toolkit.common.client_address): 0.0.0.0 is a server's word."""
    result = run_lesson("struct-send", "--host", host, "--port", "1")
    assert_one_sentence(result, f"error: {host} means 'every address' to a server; a client must name one "
                                f"real address, such as 127.0.0.1.")


def test_cli_sender_counts_records_in_good_english():
    """'1 record', '2 records': one sentence per count, from ngettext, not 'record(s)'."""
    from lessons.struct_send import sent_summary

    assert sent_summary(1, 13) == "sent 1 record, 13 bytes, then closed the connection"
    assert sent_summary(2, 26) == "sent 2 records, 26 bytes, then closed the connection"


def test_cli_port_out_of_range_is_refused():
    result = run_lesson("struct-recv", "--port", "70000")
    assert result.returncode == 2 and "65535" in result.stderr and "Traceback" not in result.stderr


def test_demo_runs_by_itself_and_shows_the_naive_receiver_failing():
    result = run_lesson("struct-recv", "--demo", timeout=100)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "struct.Struct('i5sf').size == " in out and "struct.Struct('!i5sf').size == 13" in out
    assert "b'li\\x00\\x00\\x00'" in out and "b'wangw'" in out and "3.140000104904175" in out
    summary = [line for line in out.splitlines() if " sender, " in line and " receiver: " in line]
    assert len(summary) == 7
    failed = {re.sub(r"\s+", " ", line.split("summary", 1)[1]).strip() for line in summary if "FAILED" in line}
    assert failed == {"merged sender, naive receiver: FAILED (the notes' bug)",
                      "split sender, naive receiver: FAILED (the notes' bug)"}
    assert "Traceback" not in out + result.stderr
