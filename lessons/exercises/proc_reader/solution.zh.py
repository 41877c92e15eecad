"""练习 proc-reader 的参考答案：从 /proc/<pid>/stat 读出状态、ppid 和 nice。

课程：learn show process-states     检查：learn exercise check proc-reader
"""

from __future__ import annotations

from typing import NamedTuple


class ProcessInfo(NamedTuple):
    state: str  # 一个字母：R 运行，S 睡眠，D 磁盘睡眠，T 停止，Z 僵尸
    ppid: int  # 父进程的进程号
    nice: int  # -20（贪心）.. 19（对别人友好）


def read_process(pid: int) -> ProcessInfo | None:
    """从 /proc/<pid>/stat 读出 `pid` 的状态、父进程和友好值；没有这个进程就返回 None。"""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat_file:
            line = stat_file.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    after_name = line.rpartition(")")[2].split()  # after_name[0] 是字段 3
    field = lambda number: after_name[number - 3]  # noqa: E731 - 字段编号和 `man 5 proc` 一致
    return ProcessInfo(state=field(3), ppid=int(field(4)), nice=int(field(19)))
