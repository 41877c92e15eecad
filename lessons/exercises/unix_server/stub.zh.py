"""练习 unix-server：一个会自己收拾干净的本地套接字服务器。

课程：learn show unix-recv          检查：learn exercise check unix-server

讲义里的接收端绑定了 "./sock"，下一次运行就崩溃了，因为那个文件还在。服务器不删，
套接字文件就会一直留着。只有试着连一下，才分得清：文件是过期的（没人监听：
“connection refused”），还是活的（另一个服务器正在用它）。

写出 serve(path, stop)：在 `path` 上用 AF_UNIX 流式套接字做一个回显服务器：
- `path` 上什么都没有：没问题。是过期的套接字文件：先删掉，再 bind。是有人在监听的
  套接字文件，或者根本不是套接字：抛出 FileExistsError，别动它（它不归你删）；
- 套接字文件的权限是 0600，只有你自己的用户能连：在 bind() 之前设置 umask，
  这样文件从一出生就不对别人开放，中间没有空档；
- 同时服务多个客户端（一个不说话的客户端不能卡住别人）；
- `stop` 被设置时：关闭所有东西，删掉套接字文件。
检查程序会给你一个新建临时目录里的路径。
"""

from __future__ import annotations

import os
import selectors
import socket
import stat
import threading

WAIT_SECONDS = 0.2  # 每隔多久看一次 `stop`


def prepare_path(path: str) -> None:
    """删掉 `path` 上过期的套接字文件；文件是活的或者不是套接字，就抛出 FileExistsError。"""
    # TODO：os.lstat(path)（FileNotFoundError：什么都不用做）。不是 stat.S_ISSOCK -> 抛出异常。
    # 新建一个 AF_UNIX 套接字去连它：ConnectionRefusedError 说明文件过期了，
    # 那就 os.unlink(path)；连上了说明有服务器活着，那就抛出异常。
    raise NotImplementedError("TODO：写出 prepare_path()")


def listen_unix(path: str) -> socket.socket:
    """在 `path` 上创建一个正在监听的 AF_UNIX 套接字，文件权限为 0600。"""
    # TODO：prepare_path(path)；old = os.umask(0o177)；bind；在 `finally:` 里
    # 恢复 umask；listen()。
    raise NotImplementedError("TODO：写出 listen_unix()")


def serve(path: str, stop: threading.Event) -> None:
    """在套接字文件 `path` 上给每个客户端回显，直到 `stop` 被设置；然后删掉这个文件。"""
    # TODO 1：listener = listen_unix(path)；用一个 selectors.DefaultSelector() 监视它。
    # TODO 2：直到 stop.is_set()：selector.select(WAIT_SECONDS)；接受新客户端并注册；
    #         把就绪客户端的字节回显回去；b"" 或者 ConnectionError -> 移除它。
    # TODO 3：finally：关闭客户端、监听套接字和 selector；os.unlink(path)。
    raise NotImplementedError("TODO：写出 serve()")
