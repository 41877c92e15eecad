"""练习 fork-workers 的参考答案：fork 出 N 个工作进程，再用 waitpid 收回它们。

课程：learn show fork-demo          检查：learn exercise check fork-workers
"""

from __future__ import annotations

import os
from typing import Callable

Job = Callable[[], int]


def run_workers(jobs: list[Job]) -> list[int]:
    """每个任务在自己的子进程里同时运行；按任务的顺序返回它们的退出码。"""
    pids = [start_worker(job) for job in jobs]  # 先全部启动，再开始等
    codes = []
    for pid in pids:  # 每个子进程各 waitpid(pid) 一次：退出码按任务顺序排好，也不留僵尸进程
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))
    return codes


def start_worker(job: Job) -> int:
    """fork 一次；子进程运行 `job`，用它的结果退出；父进程拿到子进程的 pid。"""
    pid = os.fork()
    if pid != 0:
        return pid
    code = 1  # 任务抛出异常时，子进程照样在这里结束，退出码是 1
    try:
        code = job()
    finally:
        os._exit(code)  # 永远不回到父进程的代码里
