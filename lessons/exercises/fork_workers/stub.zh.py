"""练习 fork-workers：用 os.fork() 启动 N 个工作进程，再用 os.waitpid() 把它们收回来。

课程：learn show fork-demo          检查：learn exercise check fork-workers

os.fork() 返回两次：在父进程（parent process）里返回子进程的进程号，在子进程（child
process）里返回 0。子进程是父进程的一份拷贝，从同一行接着往下跑，所以必须告诉它在哪里
停下：做完自己的工作，就调用 os._exit(code)，永远不要回到调用者的代码里（抛异常也不行：
那样会在错误的进程里把调用者的循环、`finally:` 块和清理代码再跑一遍）。
sys.exit() 不够用，它只是抛出一个异常。

子进程结束以后会一直是僵尸进程（zombie process，状态 Z），直到父进程用 os.waitpid()
取走它的退出状态；忘了收的父进程会让进程表里塞满僵尸。

写出 run_workers(jobs)：每个任务启动一个子进程，全部启动完再开始等；
每个子进程运行自己的任务，用任务的返回值作为退出码（任务抛出异常就用 1）；
然后等每个子进程结束，按 `jobs` 的顺序返回退出码（用 os.waitstatus_to_exitcode：
被信号 9 杀掉的子进程读出来是 -9）。
"""

from __future__ import annotations

import os
from typing import Callable

Job = Callable[[], int]


def run_workers(jobs: list[Job]) -> list[int]:
    """每个任务在自己的子进程里同时运行；按任务的顺序返回它们的退出码。"""
    # TODO 1：对每个任务：pid = os.fork()。在子进程里（pid == 0）：在 try/finally 里
    #         运行任务，最后用 os._exit(code) 结束（任务抛出异常时 code 为 1）。
    #         在父进程里：记住哪个 pid 在跑哪个任务，然后继续 fork。
    # TODO 2：然后对每个 pid：_, status = os.waitpid(pid, 0)；
    #         code = os.waitstatus_to_exitcode(status)；把它放到对应任务的位置上。
    raise NotImplementedError("TODO：写出 run_workers()")
