"""Every string `learn chat join` shows, in English and Chinese (the zh wording is the lecture notes').

One table, keyed by language then by what is said; `View` picks a language and formats
these templates. (A later issue moves this table to the gettext catalogs of lessons.toolkit.i18n.)
"""

from __future__ import annotations

# (A later issue moves this table to the gettext catalogs of lessons.toolkit.i18n.)
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "welcome": "you are in the room as {name}",
        "hint": "Enter sends, Esc Enter starts a new line; /help lists the commands; /quit or Ctrl-D leaves",
        "help": ("/who      lists the members\n"
                 "/quit     leaves the room (so do Ctrl-D and Ctrl-C)\n"
                 "/help     shows this list\n"
                 "//who     sends \"/who\" as a message (a line starting with /word is a command)"),
        "unknown_command": "there is no command {command}; /help lists them, and // sends a line starting with /.",
        "joined": "{name} entered the room",
        "left": "{name} left the room",
        "message": "{name}: {text}",
        "announce": "[admin] {text}",
        "members": "in the room: {names}",
        "refused_frame": "the server refused that: {reason}",
        "name_prompt": "your name: ",
        "cannot_join": "cannot join: {reason}.",
        "name_needed": "stdin is not a terminal, so give your name with --name NAME.",
        "goodbye": "you left the room",
        "interrupted": "stopped before joining the room.",
        "split": "your text was {size} bytes, so it went out as {count} messages (one holds at most {limit} bytes).",
        "too_long": ("your text is {size} bytes, more than the {most} bytes this client sends at once "
                     "({parts} messages of {limit}); nothing of it was sent."),
        "no_server": "no chat server is listening on {where}.",
        "not_chat": ("{where} does not look like a learn chat server (it answered {answer}); "
                     "check --host, --port or --unix."),
        "forbidden": "you are not allowed to connect to {where}.",
        "unreachable": "cannot reach {where}: {error}.",
        "bad_host": "cannot resolve the host name {host!r}.",
        "closed": "the server closed the connection.",
        "closed_because": "the server closed the connection: {reason}.",
        "lost": "the connection to the server was lost ({error}).",
        "shutdown": "the server is stopping, so the chat is over.",
        "kicked": "the administrator removed you from the room.",
        "no_answer": ("the server on {where} did not answer within {seconds:g} seconds; "
                      "check that it is a learn chat server."),
        "huge_frame": "the server sent a frame of {length} bytes, more than this client accepts.",
        # The server's ERROR codes in our words (English shows the server's own reason when it gave one).
        "reason_NAME_TAKEN": "the name {name} is taken",
        "reason_NAME_INVALID": ("the name {name} cannot be used (1 to {most} characters, no control "
                                "characters, not a reserved name such as admin)"),
        "reason_NOT_JOINED": "join the room first",
        "reason_ALREADY_JOINED": "you are already in the room",
        "reason_TOO_LARGE": "the message was over the server's size limit",
        "reason_BAD_FRAME": "the server could not accept that frame",
        "reason_RATE_LIMITED": "you are sending too fast, so that message was dropped",
        "reason_SHUTDOWN": "the server is stopping",
        "reason_TIMEOUT": "you did not join in time",
        "reason_KICKED": "the administrator removed you",
        "reason_NO_SUCH_MEMBER": "nobody has that name",
        "reason_unknown": "error code {code}",
        # Why a connection failed, for the errors a chat meets (others: the system's words).
        "no_answer_short": "no answer",
        "errno_ECONNRESET": "the connection was reset",
        "errno_EPIPE": "the connection is broken",
        "errno_ECONNABORTED": "the connection was aborted",
        "errno_ETIMEDOUT": "the connection timed out",
        "errno_ECONNREFUSED": "the connection was refused",
        "errno_EHOSTUNREACH": "the host is unreachable",
        "errno_ENETUNREACH": "the network is unreachable",
        "errno_ENETDOWN": "the network is down",
        "errno_unknown": "system error {code}",
    },
    "zh": {
        "welcome": "你以 {name} 的身份进入了聊天室",
        "hint": "回车发送, Esc 回车换行; /help 列出命令; /quit 或 Ctrl-D 退出",
        "help": ("/who      查看成员\n"
                 "/quit     退出聊天室 (Ctrl-D、Ctrl-C 也可以)\n"
                 "/help     显示这个列表\n"
                 "//who     把 \"/who\" 当作消息发送 (以 /单词 开头的一行是命令)"),
        "unknown_command": "没有 {command} 这个命令; /help 列出所有命令, 行首写 // 可以发送以 / 开头的消息。",
        "joined": "{name} 进入了聊天室",
        "left": "{name} 退出了聊天室",
        "message": "{name} 说: {text}",
        "announce": "管理员: {text}",
        "members": "聊天室里有: {names}",
        "refused_frame": "服务器拒绝了: {reason}",
        "name_prompt": "请输入名字: ",
        "cannot_join": "无法加入: {reason}。",
        "name_needed": "标准输入不是终端, 请用 --name 给出名字。",
        "goodbye": "你退出了聊天室",
        "interrupted": "还没有进入聊天室就停止了。",
        "split": "你的文字有 {size} 字节, 分成了 {count} 条消息发出 (每条最多 {limit} 字节)。",
        "too_long": "你的文字有 {size} 字节, 超过了客户端一次能发送的 {most} 字节 ({parts} 条, 每条 {limit} 字节), 所以一点也没有发送。",
        "no_server": "{where} 上没有聊天服务器。",
        "not_chat": "{where} 看起来不是 learn 聊天服务器 (它回答的是 {answer}); 请检查 --host、--port 或 --unix。",
        "forbidden": "你没有权限连接 {where}。",
        "unreachable": "无法连接 {where}: {error}。",
        "bad_host": "无法解析主机名 {host!r}。",
        "closed": "服务器关闭了连接。",
        "closed_because": "服务器关闭了连接: {reason}。",
        "lost": "与服务器的连接断了 ({error})。",
        "shutdown": "服务器正在关闭, 聊天结束了。",
        "kicked": "管理员把你移出了聊天室。",
        "no_answer": "{where} 上的服务器在 {seconds:g} 秒内没有回答; 请确认它是 learn 聊天服务器。",
        "huge_frame": "服务器发来 {length} 字节的帧, 超过了客户端能接受的大小。",
        "reason_NAME_TAKEN": "名字 {name} 已经有人用了",
        "reason_NAME_INVALID": "名字 {name} 不能用 (名字要有 1 到 {most} 个字符, 不能含控制字符, 也不能是 admin 这样的保留名字)",
        "reason_NOT_JOINED": "请先加入聊天室",
        "reason_ALREADY_JOINED": "你已经在聊天室里了",
        "reason_TOO_LARGE": "消息超过了服务器允许的大小",
        "reason_BAD_FRAME": "服务器不接受这一帧",
        "reason_RATE_LIMITED": "你发得太快了, 这条消息被丢掉了",
        "reason_SHUTDOWN": "服务器正在关闭",
        "reason_TIMEOUT": "你没有及时加入聊天室",
        "reason_KICKED": "管理员把你移出了聊天室",
        "reason_NO_SUCH_MEMBER": "没有这个名字的成员",
        "reason_unknown": "错误码 {code}",
        "no_answer_short": "没有回应",
        "errno_ECONNRESET": "连接被对方重置",
        "errno_EPIPE": "连接已经断开",
        "errno_ECONNABORTED": "连接被中止",
        "errno_ETIMEDOUT": "连接超时",
        "errno_ECONNREFUSED": "连接被拒绝",
        "errno_EHOSTUNREACH": "主机不可达",
        "errno_ENETUNREACH": "网络不可达",
        "errno_ENETDOWN": "网络断了",
        "errno_unknown": "系统错误 {code}",
    },
}
