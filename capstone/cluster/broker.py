"""The NATS side of a node: an asyncio loop in its own thread, so the server's loop never waits.

The server's loop talks to it in two directions, neither of which blocks:
- commands go in with `submit` (a thread-safe hand-over onto the broker's loop) and are
  carried out one after the other, in order: a member's JOINED is in the stream before its
  first MESSAGE, and its LEFT after its last;
- results come out on a deque, and one byte on a socket pair wakes the server's loop
  (`wakeup_fd`), which takes them with `take`.

What it does with NATS:
- the room's stream (JetStream) gets every event, published with a message id so that a
  retry after a lost acknowledgement is dropped by JetStream's de-duplication window;
- an ordered consumer reads the stream from its first event (the node rebuilds the member
  list from it) and hands every event back in stream order, its own included;
- the names bucket (JetStream key-value, one key per name, a TTL of one lease period):
  a JOIN is an atomic `create`, which only the first claimer wins; the node rewrites its
  members' keys every third of a lease with `update(last=revision)`, which fails once
  somebody else holds the key (fencing: that member is dropped); LEAVE deletes the key
  before the LEFT is published, so whoever has seen a LEFT may take the name at once;
- a node that dies stops rewriting, its keys expire, and every other node's sweep (once
  a third of a lease) publishes LEFT for the members whose key is gone: one LEFT in the
  stream, whoever saw it first, thanks to one message id per member's LEFT.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from dataclasses import dataclass

from capstone.cluster import events
from capstone.cluster.events import RoomNames
from lessons.toolkit.common import UserError
from lessons.toolkit.i18n import _

CONNECT_DEADLINE = 3.0  # seconds to reach a NATS server at start; then exit 2
REQUEST_TIMEOUT = 2.0  # seconds to wait for JetStream's acknowledgement of one publish
RETRY_LONGEST = 2.0  # the backoff of a republish grows to this
DUPLICATE_WINDOW = 120.0  # seconds JetStream remembers message ids (its default)
RENEW_BATCH = 256  # lease renewals in flight at once
HEARTBEAT = 1.0  # the ordered consumer notices a lost consumer after two silent heartbeats


# ----- what the broker hands back to the server's loop -----------------------------------

@dataclass(frozen=True)
class Delivered:
    """One event of the stream, in stream order; `pending`: how many more the stream holds now."""

    seq: int
    event: dict | None
    pending: int


@dataclass(frozen=True)
class ClaimRefused:
    """Another member holds the name, or the broker could not be asked: `reason` says which."""

    mid: str
    reason: str


@dataclass(frozen=True)
class Synced:
    """The stream held `seq` events when `Sync` `token` was asked (0: the broker could not say)."""

    token: int
    seq: int


@dataclass(frozen=True)
class BrokerState:
    up: bool


@dataclass(frozen=True)
class Note:
    """A line for the server's log."""

    text: str


# ----- what the server's loop asks for ---------------------------------------------------

@dataclass(frozen=True)
class Claim:
    mid: str
    name: str


@dataclass(frozen=True)
class Publish:
    event: dict
    msg_id: str


@dataclass(frozen=True)
class Leave:
    """The member is gone from this node: publish its LEFT (unless `quiet`: the stream already
    has it) and give its name back."""

    mid: str
    name: str
    why: str = events.LEFT_ON_ITS_OWN
    quiet: bool = False


@dataclass(frozen=True)
class Sync:
    """How far the stream goes right now: a WHO or LIST is answered once the node got there."""

    token: int


@dataclass(frozen=True)
class Kick:
    mid: str
    name: str


@dataclass
class NameLease:
    key: str
    name: str
    value: bytes
    revision: int


class Broker:
    """One node's NATS client, running in a thread of its own."""

    def __init__(self, urls: list[str], room: str, node: str, lease: float, replicas: int = 1) -> None:
        self.urls, self.names, self.node = urls, RoomNames(room), node
        self.lease, self.replicas = lease, replicas
        self._results: deque = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._commands: asyncio.Queue | None = None
        self._started = threading.Event()
        self._start_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="nats-broker", daemon=True)
        self._leases: dict[str, NameLease] = {}  # mid -> lease, this node's members
        self._roster: dict[str, tuple[str, str]] = {}  # mid -> (bucket key, name): the room, as the stream says
        self._up = False
        self._reasserting = False
        self._last_error = ""

    # ----- the server's side (any thread but the broker's) -------------------------------

    def start(self) -> None:
        """Connect, make sure the stream and the bucket exist, subscribe. Unreachable: UserError."""
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            self._thread.join()
            raise UserError(self._start_error)

    def wakeup_fd(self) -> int:
        return self._wake_r.fileno()

    def submit(self, command: Claim | Publish | Leave | Kick | Sync) -> None:
        try:
            self._loop.call_soon_threadsafe(self._commands.put_nowait, command)
        except RuntimeError:  # the broker's loop has ended (the server is stopping)
            pass

    def take(self, most: int) -> list:
        """Up to `most` results; when more are waiting, the wake-up stays armed for them."""
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        taken = []
        results = self._results
        while results and len(taken) < most:
            taken.append(results.popleft())
        if results:
            self._wake()
        return taken

    def close(self, timeout: float) -> None:
        """Carry out what was submitted (the LEFTs of a shutdown), then disconnect; at most `timeout`."""
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._commands.put_nowait, None)
            self._thread.join(timeout)
        self._wake_r.close()
        self._wake_w.close()

    # ----- handing results over ----------------------------------------------------------

    def _post(self, result: object) -> None:
        self._results.append(result)
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"!")
        except (BlockingIOError, OSError):  # full: a wake-up is already pending; closed: stopping
            pass

    # ----- the broker's thread -----------------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._commands = asyncio.Queue()
        try:
            await self._connect()
        except UserError as err:
            self._start_error = str(err)
            self._started.set()
            return
        self._up = True
        self._started.set()
        keeper = asyncio.create_task(self._keep_leases())
        try:
            await self._work()
        finally:
            keeper.cancel()
            await self._nc.close()

    async def _connect(self) -> None:
        import nats
        from nats.js.api import DeliverPolicy

        where = ", ".join(self.urls)
        if not await self._any_server_answers():  # refused at once: no point in waiting for the deadline
            raise UserError(_("no NATS server answers at {where} (connection refused); start one "
                              "(nats-server -js) or fix --cluster.").format(where=where))
        try:
            self._nc = await asyncio.wait_for(nats.connect(
                servers=self.urls, connect_timeout=CONNECT_DEADLINE / 2, max_reconnect_attempts=-1,
                reconnect_time_wait=0.5, error_cb=self._on_error, disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected), CONNECT_DEADLINE)
        except (asyncio.TimeoutError, OSError, nats.errors.Error):
            why = f" ({self._last_error})" if self._last_error else ""
            raise UserError(_("cannot reach a NATS server at {where} within {seconds:g} seconds{why}; "
                              "start one (nats-server -js) or fix --cluster.").format(
                where=where, seconds=CONNECT_DEADLINE, why=why)) from None
        self._js = self._nc.jetstream(timeout=REQUEST_TIMEOUT)
        try:
            await self._prepare_room()
            self._subscription = await self._js.subscribe(
                self.names.subject, cb=self._on_event, ordered_consumer=True, idle_heartbeat=HEARTBEAT,
                deliver_policy=DeliverPolicy.ALL)
        except (asyncio.TimeoutError, nats.errors.Error) as err:
            await self._nc.close()
            raise UserError(_("the NATS server at {where} refused the room's stream ({error}); "
                              "JetStream must be on: start it with nats-server -js.").format(
                where=where, error=str(err) or type(err).__name__)) from None

    async def _any_server_answers(self) -> bool:
        """False only when every server refused a TCP connection (a timeout is not a refusal)."""
        from urllib.parse import urlsplit

        for url in self.urls:
            address = urlsplit(url)
            try:
                _reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(address.hostname, address.port or 4222), CONNECT_DEADLINE / 2)
            except ConnectionRefusedError:
                continue
            except (OSError, asyncio.TimeoutError):
                return True  # not a refusal (unresolvable, silent): the client's own attempt says why
            writer.close()
            return True
        return False

    async def _prepare_room(self) -> None:
        """The stream and the names bucket, created if missing, adjusted if they differ."""
        from nats.js.api import KeyValueConfig, StorageType, StreamConfig
        from nats.js.errors import BadRequestError

        stream = StreamConfig(name=self.names.stream, subjects=[self.names.subject], storage=StorageType.FILE,
                              num_replicas=self.replicas, duplicate_window=DUPLICATE_WINDOW)
        try:
            await self._js.add_stream(stream)
        except BadRequestError:  # there already, made with other settings
            await self._js.update_stream(stream)
        bucket = KeyValueConfig(bucket=self.names.bucket, ttl=self.lease, history=1, replicas=self.replicas)
        try:
            self._kv = await self._js.create_key_value(bucket)
        except BadRequestError:  # another lease period: the bucket's TTL follows the latest node
            await self._js.update_stream(StreamConfig(name=f"KV_{self.names.bucket}", max_age=self.lease,
                                                      duplicate_window=min(self.lease, DUPLICATE_WINDOW)))
            self._kv = await self._js.key_value(self.names.bucket)

    # ----- NATS callbacks ----------------------------------------------------------------

    async def _on_error(self, err: Exception) -> None:
        self._last_error = str(err) or type(err).__name__

    async def _on_disconnected(self) -> None:
        if self._up:
            self._up = False
            self._post(BrokerState(up=False))

    async def _on_reconnected(self) -> None:
        asyncio.get_running_loop().create_task(self._reassert())

    async def _reassert(self) -> None:
        """Back in touch: the stream and bucket may be new (a NATS server without its store),
        and our names may have expired meanwhile: keep those still ours, drop the others.
        JetStream may still be electing leaders after a server died: try until it answers."""
        import nats

        if self._reasserting:
            return
        self._reasserting = True
        delay = 0.1
        try:
            while not self._up and self._nc.is_connected:
                try:
                    await self._prepare_room()
                    await self._refresh_leases()
                except (asyncio.TimeoutError, nats.errors.Error):
                    await asyncio.sleep(delay)
                    delay = min(RETRY_LONGEST, delay * 2)
                    continue
                self._up = True
                self._post(BrokerState(up=True))
        finally:
            self._reasserting = False

    async def _on_event(self, msg) -> None:  # noqa: ANN001
        metadata = msg.metadata
        event = events.decode(msg.data)
        if event is not None:
            self._track(event)
        self._post(Delivered(metadata.sequence.stream, event, metadata.num_pending))

    def _track(self, event: dict) -> None:
        """The broker's own copy of who is in the room, for the sweep."""
        if event["type"] == events.JOIN:
            name = str(event.get("name"))
            key = events.name_bucket_key(name)
            for mid in [mid for mid, (held, _name) in self._roster.items() if held == key]:
                del self._roster[mid]  # the name changed hands: the old holder is gone
            self._roster[str(event.get("mid"))] = (key, name)
        elif event["type"] == events.LEFT:
            self._roster.pop(str(event.get("mid")), None)

    # ----- commands, one after the other -------------------------------------------------

    async def _work(self) -> None:
        while (command := await self._commands.get()) is not None:
            try:
                await self._carry_out(command)
            except Exception as err:  # noqa: BLE001 - one command's surprise must not end the node's broker
                self._post(Note(_("the broker could not carry out {command}: {error}").format(
                    command=type(command).__name__, error=repr(err))))

    async def _carry_out(self, command: Claim | Publish | Leave | Kick | Sync) -> None:
        if isinstance(command, Claim):
            await self._claim(command)
        elif isinstance(command, Publish):
            await self._publish(command.event, command.msg_id)
        elif isinstance(command, Kick):
            await self._kick(command)
        elif isinstance(command, Sync):
            await self._sync(command)
        else:
            await self._leave(command)

    async def _claim(self, claim: Claim) -> None:
        import nats
        from nats.js.errors import KeyWrongLastSequenceError

        key = events.name_bucket_key(claim.name)
        value = events.encode_claim(self.node, claim.mid, claim.name)
        # A refusal's reason goes on the wire in ERROR NAME_TAKEN: protocol text, English like
        # the room's own (the client translates the reasons it knows), so never through _().
        try:
            revision = await self._kv.create(key, value)
        except KeyWrongLastSequenceError:
            self._post(ClaimRefused(claim.mid, f"the name {claim.name} is taken"))
            return
        except (asyncio.TimeoutError, nats.errors.Error):
            self._post(ClaimRefused(claim.mid, "the room cannot check names now: this server lost its "
                                               "message broker; try again soon"))
            return
        self._leases[claim.mid] = NameLease(key, claim.name, value, revision)
        await self._publish(*events.joined(claim.mid, claim.name))

    async def _publish(self, event: dict, msg_id: str) -> None:
        """Publish until JetStream acknowledges; a retry carries the same message id, so a
        publish whose acknowledgement was lost is not stored twice."""
        import nats

        delay = 0.1
        while True:
            try:
                await self._js.publish(self.names.subject, events.encode(event), headers={"Nats-Msg-Id": msg_id})
                return
            except (asyncio.TimeoutError, nats.errors.Error):
                await asyncio.sleep(delay)
                delay = min(RETRY_LONGEST, delay * 2)

    async def _leave(self, leave: Leave) -> None:
        import nats

        lease = self._leases.pop(leave.mid, None)
        if lease is None:  # the claim failed, or the name was already lost (a sweep publishes its LEFT)
            return
        try:  # the name first: whoever has seen the LEFT can take the name at once
            await self._release(lease)
        except (asyncio.TimeoutError, nats.errors.Error):
            pass  # unreachable: the key expires within a lease anyway
        if not leave.quiet:
            await self._publish(*events.left(leave.mid, leave.name, leave.why))

    async def _sync(self, sync: Sync) -> None:
        import nats

        try:
            info = await self._js.stream_info(self.names.stream)
            seq = info.state.last_seq
        except (asyncio.TimeoutError, nats.errors.Error):
            seq = 0  # unreachable: the node answers with what it has
        self._post(Synced(sync.token, seq))

    async def _kick(self, kick: Kick) -> None:
        """The administrator removes a member of any node: its name is freed here (if it still
        holds it), then its LEFT goes to the stream, where its own node sees it and closes it."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        key = events.name_bucket_key(kick.name)
        try:
            entry = await self._kv.get(key)
            if events.decode_claim(entry.value).get("mid") == kick.mid:
                await self._kv.delete(key, last=entry.revision)
        except (KeyNotFoundError, KeyWrongLastSequenceError):
            pass  # gone already, or renewed this instant: its node frees it when it sees the LEFT
        await self._publish(*events.left(kick.mid, kick.name, events.LEFT_KICKED))

    async def _release(self, lease: NameLease) -> None:
        """Delete the key if it is still ours. A renewal may have rewritten it meanwhile (a new
        revision, the same value: still ours); another member's value means it is not."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        for _attempt in range(3):
            try:
                await self._kv.delete(lease.key, last=lease.revision)
                return
            except KeyWrongLastSequenceError:
                try:
                    entry = await self._kv.get(lease.key)
                except KeyNotFoundError:
                    return
                if entry.value != lease.value:
                    return
                lease.revision = entry.revision

    # ----- leases ------------------------------------------------------------------------

    async def _keep_leases(self) -> None:
        import nats

        while True:
            await asyncio.sleep(self.lease / 3)
            if not self._up:
                continue
            try:
                await self._refresh_leases()
                await self._sweep()
            except (asyncio.TimeoutError, nats.errors.Error):
                pass  # the disconnection callback says so; the next round tries again
            except Exception as err:  # noqa: BLE001 - the leases must be kept whatever happened
                self._post(Note(_("renewing the names failed: {error}").format(error=repr(err))))

    async def _refresh_leases(self) -> None:
        """Rewrite each of our keys, expecting our own last revision: a key that expired (we
        were cut off longer than a lease) or changed hands is lost, and so is its member."""
        from nats.js.errors import KeyWrongLastSequenceError

        leases = list(self._leases.items())
        for start in range(0, len(leases), RENEW_BATCH):  # many in flight at once: one round trip a batch
            batch = leases[start:start + RENEW_BATCH]
            outcomes = await asyncio.gather(
                *(self._kv.update(lease.key, lease.value, last=lease.revision) for _mid, lease in batch),
                return_exceptions=True)
            for (mid, lease), outcome in zip(batch, outcomes):
                if isinstance(outcome, int):
                    lease.revision = outcome
                elif isinstance(outcome, KeyWrongLastSequenceError) and self._leases.pop(mid, None) is not None:
                    # Its LEFT comes from a sweep (this node's too, now that the lease is not ours)
                    # or from the new holder's JOINED; either closes the member here.
                    self._post(Note(_("lost the name {name}: its lease ran out while this server was cut off "
                                      "from the broker").format(name=lease.name)))
            failure = next((outcome for outcome in outcomes if isinstance(outcome, Exception)
                            and not isinstance(outcome, KeyWrongLastSequenceError)), None)
            if failure is not None:
                raise failure

    async def _sweep(self) -> None:
        """LEFT for every member of another node whose key is gone (its node died).

        The members are read before the keys: a member whose JOINED we have seen had its key
        created before that, so the listing shows it unless it is really gone. A key missing
        from the listing is asked for once more before its member is declared lost."""
        from nats.js.errors import KeyNotFoundError, NoKeysError

        members = [(mid, key, name) for mid, (key, name) in self._roster.items() if mid not in self._leases]
        if not members:
            return
        try:
            present = set(await self._kv.keys())
        except NoKeysError:
            present = set()
        for mid, key, name in members:
            if key in present or mid not in self._roster:
                continue
            try:
                await self._kv.get(key)
                continue
            except KeyNotFoundError:
                pass
            await self._publish(*events.left(mid, name, events.LEFT_LOST))
