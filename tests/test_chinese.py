"""The Chinese edition end to end: with LANG=zh_CN.UTF-8 the commands print Chinese.

"Chinese" is checked the way a reader would notice it is not: no English sentence, that
is no run of three or more English words (see `english_runs`). Code, commands,
identifiers and protocol names stay as they are in both languages, so they do not count.
With LANG=C.UTF-8 or en_US.UTF-8 everything stays English.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from chatserver import OutputPipe, ServerProcess
from lessonrun import child_env
from test_docs_zh import DOCS, PARSER
from rich.cells import cell_len

from capstone.client.view import CONTINUATION, fit_to_width
from capstone.codec import Kind

TIMEOUT = 60
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")

# ----- the detector -------------------------------------------------------------------------------

INLINE_CODE = re.compile(r"`[^`\n]*`")
COMMAND = re.compile(r"\blearn(?: +(?:--?)?[A-Za-z0-9][\w./:=@-]*)+")  # learn run poll-server --demo
BREAKS = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef|│┃]")  # Chinese and table borders end a run
# A word: lower case or capitalised letters, maybe ending a clause (`word,` `word.`). Tokens with
# digits, dots inside, underscores, brackets or slashes are code (os.fork(), SO_LINGER, /proc/<pid>),
# and ALL-CAPS tokens are protocol and error names (POLLIN, EAGAIN, JOIN, TCP).
WORD = re.compile(r"[A-Z]?[a-z]+(?:'[a-z]+)?[,.;:!?]?")


def english_runs(text: str) -> list[str]:
    """The runs of three or more English words in `text`, outside code, commands and names."""
    text = COMMAND.sub(" ", INLINE_CODE.sub(" ", text))
    runs, current = [], []
    for token in BREAKS.sub(" | ", text).replace("\n", " | ").split():  # a line ends a run too
        if WORD.fullmatch(token):
            current.append(token)
            continue
        if len(current) >= 3:
            runs.append(" ".join(current))
        current = []
    if len(current) >= 3:
        runs.append(" ".join(current))
    return runs


def test_the_detector_finds_english_sentences() -> None:
    assert english_runs("error: the server closed the connection.") == ["error: the server closed the connection."]
    assert english_runs("服务器说：nothing is listening here") == ["nothing is listening here"]
    assert english_runs(" demo  Run it without --notes-bug: the fixed server drops alice") == [
        "demo Run it without", "the fixed server drops alice"]
    assert english_runs("│ poll-server │ One thread serves many │") == ["One thread serves many"]


def test_the_detector_leaves_code_commands_and_names_alone() -> None:
    for text in (
        "下一步：learn show poll-server，然后 learn run poll-server --demo。",
        "修正的办法：`conn = fdmap.pop(fd)` 把套接字取出来",
        "fd 5：发来 5 字节：'hello'",
        "内核报告了 POLLIN POLLHUP POLLERR",
        "listening on 127.0.0.1:8888",
        "SO_LINGER {on, 0 s}，然后 close() 发出 RST",
        "   reap  os.waitpid(30047, 0) 返回了；os.waitstatus_to_exitcode(status) = 7",
        "请在 Linux 或 macOS（或 WSL）上运行",
        " client  alice 连接服务器",
        "返回 False\n  child  logging 处理器的锁",
    ):
        assert english_runs(text) == [], text


# ----- the commands -------------------------------------------------------------------------------

def env_for(lang: str) -> dict[str, str]:
    """Only LANG decides: the other locale variables and LEARN_LANG are taken out."""
    env = {key: value for key, value in child_env().items()
           if key not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LEARN_LANG")}
    env.update(LANG=lang, COLUMNS="100")
    return env


def learn(*args: str, lang: str = "zh_CN.UTF-8", stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lessons", *args], input=stdin, capture_output=True,
                          text=True, env=env_for(lang), timeout=TIMEOUT, check=False)


def assert_chinese(result: subprocess.CompletedProcess) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert CJK.search(output), output
    assert english_runs(output) == [], output


@pytest.mark.parametrize("args", [
    ("list",),
    ("run", "poll-server", "--demo"),
    ("run", "fork-demo", "--repeat", "20", "--lines", "20"),
    ("--help",),
    ("run", "poll-server", "--help"),
], ids=" ".join)
def test_commands_speak_chinese(args: tuple[str, ...]) -> None:
    assert_chinese(learn(*args))


def test_the_root_option_chooses_chinese_help_whatever_the_locale() -> None:
    shown = learn("--lang", "zh", "--help", lang="C.UTF-8")
    assert_chinese(shown)
    assert "用法：" in shown.stdout and "选项" in shown.stdout and "显示这条帮助信息后退出。" in shown.stdout


def test_usage_mistakes_are_one_chinese_sentence() -> None:
    wrong = learn("run", "poll-server", "--port", "x")
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("错误：--port") or wrong.stderr.startswith("错误：'--port'"), wrong.stderr
    assert "它必须是整数" in wrong.stderr and english_runs(wrong.stderr) == []
    missing = learn("show")
    assert missing.returncode == 2 and "缺少参数 'LESSON'" in missing.stderr, missing.stderr


def test_chat_join_in_pipe_mode_speaks_chinese() -> None:
    """bob joins with `learn chat join`; alice, a raw client, enters, speaks and leaves while he is there."""
    with ServerProcess.start("--port", "0") as server:
        bob = subprocess.Popen([sys.executable, "-m", "lessons", "chat", "join", "--port", str(server.port),
                                "--name", "bob"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env_for("zh_CN.UTF-8"))
        out, err = OutputPipe(bob.stdout), OutputPipe(bob.stderr)
        try:
            assert out.lines(1, TIMEOUT), err.text  # bob is in the room
            alice = server.connect("alice")
            alice.join("alice")
            alice.send_frame(Kind.SAY, "大家好")
            alice.send_frame(Kind.LEAVE)
            assert out.lines(4, TIMEOUT), out.text + err.text  # welcome, alice enters, speaks, leaves
            bob.stdin.write("/who\n".encode())
            bob.stdin.close()
            bob.wait(TIMEOUT)
            out.wait_ended(TIMEOUT)
            err.wait_ended(TIMEOUT)
        finally:
            bob.kill()
    joined = subprocess.CompletedProcess(bob.args, bob.returncode, out.text, err.text)
    assert_chinese(joined)
    for line in ("你以 bob 的身份进入了聊天室", "alice 进入了聊天室", "alice 说: 大家好", "alice 退出了聊天室"):
        assert line in joined.stdout.splitlines(), joined.stdout


def test_show_a_lesson_page_in_chinese() -> None:
    """The page is shown in Chinese; its prose (the page without its code blocks, which stay as
    in the English page: a demo's output, a program's text) holds no English sentence."""
    shown = learn("show", "poll-server")
    assert shown.returncode == 0, shown.stderr
    assert "用 poll() 写回显服务器" in shown.stdout, shown.stdout
    page = (DOCS / "zh" / "lessons" / "poll-server.md").read_text(encoding="utf-8")
    prose = "\n".join(token.content for token in PARSER.parse(page) if token.type == "inline")
    assert english_runs(prose) == []


def test_an_exercise_check_reports_in_chinese(tmp_path) -> None:  # noqa: ANN001
    workspace = tmp_path / "ws"
    made = learn("exercise", "init", str(workspace))
    assert made.returncode == 0, made.stdout + made.stderr
    checked = subprocess.run([sys.executable, "-m", "lessons", "exercise", "check", "frames"], cwd=workspace,
                             capture_output=True, text=True, env=env_for("zh_CN.UTF-8"), timeout=TIMEOUT, check=False)
    output = checked.stdout + checked.stderr
    assert checked.returncode == 1, output  # the stub does not pass
    assert CJK.search(output) and english_runs(output) == [], output


@pytest.mark.parametrize("lang", ["C.UTF-8", "en_US.UTF-8"])
def test_other_locales_stay_english(lang: str) -> None:
    listed = learn("list", lang=lang)
    assert listed.returncode == 0 and "what it teaches" in listed.stdout, listed.stdout
    assert not CJK.search(listed.stdout), listed.stdout
    helped = learn("--help", lang=lang)
    assert "Usage:" in helped.stdout and "Show this message and exit." in helped.stdout


# ----- wide characters ----------------------------------------------------------------------------

def test_the_chinese_lesson_table_lines_up() -> None:
    listed = learn("list")
    assert listed.returncode == 0, listed.stderr
    table = [line for line in listed.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert len(table) > 20 and any(CJK.search(line) for line in table)
    assert {cell_len(line) for line in table} == {cell_len(table[0])}, "\n".join(table)
    assert "…" not in listed.stdout  # Chinese is folded between characters, never cut


def test_a_long_chinese_chat_line_wraps_at_the_terminal_width() -> None:
    said = "bob 说: " + "服务器把消息广播给聊天室里的每一个成员，" * 3 + "then English words wrap too"
    lines = fit_to_width((said,), 30)
    assert len(lines) > 3
    assert all(cell_len(line) <= 30 for line in lines), lines
    assert all(line.startswith(CONTINUATION) for line in lines[1:])
    assert "".join(line.removeprefix(CONTINUATION) for line in lines).replace(" ", "") == said.replace(" ", "")
    assert lines[-1].endswith("wrap too") and not any(line.endswith("Engli") for line in lines)  # whole words
