"""练习 epoll-edge 的参考答案：边缘触发的 epoll，一直读到 EAGAIN 为止。

课程：learn show epoll-server       检查：learn exercise check epoll-edge
"""

from __future__ import annotations

import select
import socket
import threading

WAIT_SECONDS = 0.2  # epoll.poll() 的单位是秒（poll() 的单位是毫秒）


def read_available(sock: socket.socket) -> tuple[bytes, bool]:
    """非阻塞的 `sock` 里等着的全部字节；对端已经关闭时，第二项为 True。"""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:  # EAGAIN：套接字空了，这次边缘触发用完了
            return b"".join(chunks), False
        except ConnectionResetError:
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


def write_all(sock: socket.socket, data: bytes) -> None:
    """在非阻塞套接字上发完 `data`；发送缓冲区满了就稍等一下。"""
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
    epoll = select.epoll()
    epoll.register(listener.fileno(), select.EPOLLIN)
    clients: dict[int, socket.socket] = {}
    try:
        while not stop.is_set():
            for fd, _event in epoll.poll(WAIT_SECONDS):
                if fd == listener.fileno():
                    sock, _address = listener.accept()
                    sock.setblocking(False)
                    clients[sock.fileno()] = sock
                    epoll.register(sock.fileno(), select.EPOLLIN | select.EPOLLET)
                elif not answer(clients[fd]):
                    epoll.unregister(fd)
                    clients.pop(fd).close()
    finally:
        for sock in clients.values():
            sock.close()
        epoll.close()


def answer(sock: socket.socket) -> bool:
    """把一个客户端读空并回显；它走了就返回 False。"""
    data, closed = read_available(sock)
    try:
        write_all(sock, data)
    except ConnectionError:
        return False
    return not closed
