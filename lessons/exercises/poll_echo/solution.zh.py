"""练习 poll-echo 的参考答案：客户端断开也不崩溃的 poll() 回显服务器。

课程：learn show poll-server        检查：learn exercise check poll-echo
"""

from __future__ import annotations

import select
import socket
import threading

POLL_TIMEOUT_MS = 200  # poll() 的单位是毫秒；每隔这么久醒来一次，看看 `stop`
GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL


def serve(listener: socket.socket, stop: threading.Event) -> None:
    """把每个客户端发来的字节回显给它，直到 `stop` 被设置。"""
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    clients: dict[int, socket.socket] = {}

    def drop(fd: int) -> None:
        sock = clients.pop(fd)  # 从字典里拿出来，拿在手里：之后不再去字典里找它
        poller.unregister(fd)
        sock.close()

    try:
        while not stop.is_set():
            for fd, event in poller.poll(POLL_TIMEOUT_MS):
                if fd == listener.fileno():
                    sock, _address = listener.accept()
                    clients[sock.fileno()] = sock
                    poller.register(sock, select.POLLIN)
                elif event & select.POLLIN:
                    if not echo_once(clients[fd]):
                        drop(fd)
                elif event & GONE:
                    drop(fd)
    finally:
        for sock in clients.values():
            sock.close()


def echo_once(sock: socket.socket) -> bool:
    """回答一个可读的客户端；它说完了（EOF）或者断了（重置）时返回 False。"""
    try:
        data = sock.recv(4096)
        if data:
            sock.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        return False
    return bool(data)
