"""Adapt a plain handler object to a generated grpclib service base.

The generated bases (modal_proto.api_grpc.ModalClientBase, ...) declare one
abstract method per RPC taking a raw stream. Handlers here are simpler: a
unary RPC is `async def Name(self, request) -> response`, a server-streaming
one is an async generator yielding responses. RPCs a handler does not define
answer UNIMPLEMENTED (the client does not retry that code, so a gap in the
emulator shows at once instead of as a minute of retries). Unary calls honour
the client's idempotency key (idempotency.py).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from grpclib import GRPCError, Status
from grpclib.const import Cardinality

from modal_emulator.faults import LOST_REPLY, FaultInjector
from modal_emulator.idempotency import KEY_HEADER, IdempotentCalls

log = logging.getLogger("modal_emulator")


def client_streaming(impl):
    """Marks a handler whose RPC streams requests in: it gets an async iterator of them."""
    impl.client_streaming = True
    return impl


def build_service(base_cls: type, handler: Any, faults: FaultInjector) -> Any:
    """An instance of a subclass of `base_cls` whose RPCs call `handler`."""
    names = sorted(base_cls.__abstractmethods__)
    calls = IdempotentCalls()
    namespace = {name: _rpc(name, getattr(handler, name, None), faults, calls) for name in names}
    cls = type(f"Emulated{base_cls.__name__}", (base_cls,), namespace)
    service = cls()
    cardinality = {path.rsplit("/", 1)[1]: h.cardinality for path, h in service.__mapping__().items()}
    for name, impl in ((n, getattr(handler, n, None)) for n in names):
        if impl is None:
            continue
        streaming = cardinality[name] in (Cardinality.UNARY_STREAM, Cardinality.STREAM_STREAM)
        if streaming != inspect.isasyncgenfunction(impl):
            raise TypeError(f"{type(handler).__name__}.{name} must be "
                            f"{'an async generator' if streaming else 'a coroutine'}")
    return service


def _rpc(name: str, impl: Any, faults: FaultInjector, calls: IdempotentCalls):
    async def call(self, stream) -> None:
        if getattr(impl, "client_streaming", False):
            request = _Requests(stream)
        else:
            request = await stream.recv_message()
        log.debug("rpc %s %s", name, _short(request) if not isinstance(request, _Requests) else "(stream)")
        if impl is None:
            log.warning("unimplemented rpc %s", name)
            raise GRPCError(Status.UNIMPLEMENTED, f"modal emulator: {name} is not implemented")
        fault = faults.take(name)
        if fault is not None:
            log.info("injected fault: %s -> %s", name, fault.status)
            raise GRPCError(fault.grpc_status, fault.message)
        try:
            if inspect.isasyncgenfunction(impl):
                async for response in impl(request):
                    await stream.send_message(response)
            else:
                key = (stream.metadata or {}).get(KEY_HEADER, "")
                response, replayed = await calls.run(name, key, lambda: impl(request))
                if replayed:
                    log.debug("rpc %s: a retry of a call that took effect; its answer again", name)
                lost = faults.take(name, LOST_REPLY)
                if lost is not None:
                    log.info("injected lost reply: %s took effect, answering %s", name, lost.status)
                    raise GRPCError(lost.grpc_status, lost.message)
                await stream.send_message(response)
        except GRPCError:
            raise
        except KeyError as exc:
            # Lookups of unknown ids: NOT_FOUND, which the client does not retry.
            raise GRPCError(Status.NOT_FOUND, f"{name}: not found: {exc.args[0] if exc.args else ''}") from None
        except Exception:
            log.exception("rpc %s failed", name)
            raise GRPCError(Status.INTERNAL, f"modal emulator: {name} failed (see the emulator's log)") from None

    call.__name__ = name
    return call


class _Requests:
    """The requests of a client-streaming RPC, as an async iterator."""

    def __init__(self, stream):
        self.stream = stream

    def __aiter__(self):
        return self

    async def __anext__(self):
        message = await self.stream.recv_message()
        if message is None:
            raise StopAsyncIteration
        return message


_REDACTED_FIELDS = ("secret_sources", "ephemeral_secrets", "env", "data")


def _short(message: Any) -> str:
    """The request for the debug log, without secrets or file contents."""
    message = type(message).FromString(message.SerializeToString())
    present = {f.name for f, _ in message.ListFields()}
    for field in _REDACTED_FIELDS:
        if field in present:
            message.ClearField(field)
    text = str(message).replace("\n", " ")
    return text[:300] + ("..." if len(text) > 300 else "")
