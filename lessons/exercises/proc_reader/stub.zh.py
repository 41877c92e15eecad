"""练习 proc-reader：从 /proc 读出一个进程的状态、父进程和友好值。

课程：learn show process-states     检查：learn exercise check proc-reader

`ps aux` 和 `pstree` 都是在读 /proc。每个进程（process）都有一个目录 /proc/<pid>，
里面的 `stat` 文件只有一行：

    4242 (python3) S 4100 4242 4100 34816 4242 4194560 ... 0 20 0 1 0 ...
    pid  (名字)    状态  ppid ...                   （字段 19 是 nice）

字段按 `man 5 proc` 的方式从 1 开始编号：1 pid，2 名字，3 状态，4 ppid，19 nice。
陷阱在这里：名字是进程自己起的，可以带空格，也可以带 ')'，所以把整行按空格切开就会出错。
要在最后一个 ')' 处切开，从那里往后数。
进程可能在你两次查看之间消失：这时就是没有答案（None）。
"""

from __future__ import annotations

from typing import NamedTuple


class ProcessInfo(NamedTuple):
    state: str  # 一个字母：R 运行，S 睡眠，D 磁盘睡眠，T 停止，Z 僵尸
    ppid: int  # 父进程的进程号
    nice: int  # -20（贪心）.. 19（对别人友好）


def read_process(pid: int) -> ProcessInfo | None:
    """从 /proc/<pid>/stat 读出 `pid` 的状态、父进程和友好值；没有这个进程就返回 None。"""
    # TODO 1：读 /proc/<pid>/stat；FileNotFoundError 或 ProcessLookupError -> 返回 None。
    # TODO 2：最后一个 ")" 后面的内容依次是字段 3、4、5……：把这一段按空格切开。
    # TODO 3：状态是字段 3，ppid 是字段 4，nice 是字段 19（小心下标的偏移）。
    raise NotImplementedError("TODO：写出 read_process()")
