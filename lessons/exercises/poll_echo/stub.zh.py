"""练习 poll-echo：用 poll() 写一个回显（echo）服务器，客户端断开时不崩溃。

课程：learn show poll-server        检查：learn exercise check poll-echo

写出 serve(listener, stop)。用 select.poll() 等待就绪（ready），接受新的客户端，
读出每个客户端发来的字节，再原样发回去。客户端离开、重置连接或者半关闭连接时，
服务器都要继续工作：一个客户端结束了，服务器不能跟着结束。

检查程序会给你一个正在监听的套接字（socket，已经绑定到空闲端口并开始监听）和一个
threading.Event。事件被设置后，要尽快返回，并关闭所有客户端套接字；监听套接字不要关，
它属于调用者。

讲义里的服务器在第一个客户端断开时就崩溃了：它先把套接字从 fd 字典里删掉，
后面又去用它（KeyError）。你的服务器不能这样。
"""

from __future__ import annotations

import select
import socket
import threading

POLL_TIMEOUT_MS = 200  # poll() 的单位是毫秒；每隔这么久醒来一次，看看 `stop`


def serve(listener: socket.socket, stop: threading.Event) -> None:
    """把每个客户端发来的字节回显给它，直到 `stop` 被设置。"""
    # TODO 1：创建一个 poll 对象；为监听套接字注册 POLLIN。
    # TODO 2：准备一个字典 fd -> socket：poll() 返回的是 fd 数字，你需要的是套接字。
    # TODO 3：循环到 stop.is_set() 为止，每次调用 poller.poll(POLL_TIMEOUT_MS)：
    #   - 监听套接字就绪：accept()，再为新客户端注册 POLLIN；
    #   - 某个客户端就绪：recv()；收到字节 -> 用 sendall() 原样发回；
    #     收到 b""（客户端说完了）或者 ConnectionResetError -> 移除这个客户端：
    #     取消注册、关闭、从字典里删掉，删掉以后不要再去字典里找它；
    #   - 只有 POLLHUP 或 POLLERR、没有 POLLIN：客户端已经走了，同样移除。
    # TODO 4：stop 被设置以后，关闭每个客户端套接字（监听套接字不关）。
    raise NotImplementedError("TODO：用 select.poll() 写出 serve()")
