"""练习 epoll-edge：边缘触发的 epoll 读取，一直读到 EAGAIN 为止。

课程：learn show epoll-server       检查：learn exercise check epoll-edge

水平触发（level-triggered，默认方式）的 epoll 只要套接字里还有数据，就一次又一次地
报告它可读。边缘触发（edge-triggered，EPOLLET）只在新数据到达的那一刻报告一次。
如果你只读走一部分，epoll 不会再提醒你：剩下的数据要等客户端再发东西才会被注意到，
而客户端也许再也不发了。所以用 EPOLLET 时，要把套接字读空；非阻塞（non-blocking）的
recv() 会准确地告诉你什么时候读空了：它抛出 BlockingIOError（errno EAGAIN）。

1. read_available(sock)：读出非阻塞套接字里等着的全部数据，并说明对端（peer）是否已经关闭。
2. serve(listener, stop)：基于 epoll 的回显服务器，每个客户端都用 EPOLLIN | EPOLLET
   注册，用 read_available() 读空。约定和 poll-echo 一样：`stop` 被设置后尽快返回，
   关闭客户端，监听套接字不关。
"""

from __future__ import annotations

import select
import socket
import threading

WAIT_SECONDS = 0.2  # epoll.poll() 的单位是秒（poll() 的单位是毫秒）


def read_available(sock: socket.socket) -> tuple[bytes, bool]:
    """非阻塞的 `sock` 里等着的全部字节；对端已经关闭时，第二项为 True。"""
    # TODO：循环调用 sock.recv(65536)，把读到的块攒起来：
    #   BlockingIOError      -> 暂时没有更多了：返回 (data, False)
    #   b""                  -> 对端关闭了：返回 (data, True)
    #   ConnectionResetError -> 也算关闭：返回 (data, True)
    raise NotImplementedError("TODO：一直读，直到 recv() 抛出 BlockingIOError")


def write_all(sock: socket.socket, data: bytes) -> None:
    """在非阻塞套接字上发完 `data`；发送缓冲区满了就稍等一下。

    这个函数是给好的，不属于练习：真正的事件循环会把没发完的部分放进队列，
    向 epoll 要 EPOLLOUT，而不是在这里等。
    """
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            select.select([], [sock], [], 1.0)
            continue
        view = view[sent:]


def serve(listener: socket.socket, stop: threading.Event) -> None:
    """以边缘触发的方式把每个客户端的字节回显给它，直到 `stop` 被设置。"""
    # TODO 1：epoll = select.epoll()；为监听套接字注册 EPOLLIN。
    # TODO 2：循环到 stop.is_set() 为止：for fd, event in epoll.poll(WAIT_SECONDS)：
    #   - 监听套接字：accept()，把客户端设为非阻塞，用
    #     select.EPOLLIN | select.EPOLLET 注册它，记进字典 fd -> socket；
    #   - 客户端：data, closed = read_available(sock)；write_all(sock, data)；
    #     closed 为真（或者发送时出现 ConnectionError）-> 取消注册、关闭、从字典删掉。
    # TODO 3：最后关闭所有客户端和 epoll 对象（监听套接字不关）。
    raise NotImplementedError("TODO：用 select.epoll() 和 EPOLLET 写出 serve()")
