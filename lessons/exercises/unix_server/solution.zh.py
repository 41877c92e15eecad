"""练习 unix-server 的参考答案：一个会自己收拾干净的本地套接字服务器。

课程：learn show unix-recv          检查：learn exercise check unix-server
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
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise FileExistsError(f"{path} exists and is not a socket file")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:  # 没人监听：是死掉的服务器留下的
        os.unlink(path)
        return
    finally:
        probe.close()
    raise FileExistsError(f"another server is listening on {path}")


def listen_unix(path: str) -> socket.socket:
    """在 `path` 上创建一个正在监听的 AF_UNIX 套接字，文件权限为 0600。"""
    prepare_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # 文件一出生就是 0600：没有哪一刻别人能连上
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    sock.listen()
    return sock


def serve(path: str, stop: threading.Event) -> None:
    """在套接字文件 `path` 上给每个客户端回显，直到 `stop` 被设置；然后删掉这个文件。"""
    listener = listen_unix(path)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    try:
        while not stop.is_set():
            for key, _events in selector.select(WAIT_SECONDS):
                if key.fileobj is listener:
                    client, _address = listener.accept()
                    selector.register(client, selectors.EVENT_READ)
                elif not echo_once(key.fileobj):
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
    finally:
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        selector.close()
        os.unlink(path)


def echo_once(sock: socket.socket) -> bool:
    """回答一个可读的客户端；它说完了或者断了时返回 False。"""
    try:
        data = sock.recv(4096)
        if data:
            sock.sendall(data)
    except ConnectionError:
        return False
    return bool(data)
