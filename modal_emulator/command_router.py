"""The worker-side TaskCommandRouter RPCs: start a command, stream its output,
report its exit.

The real client reaches this service at the URL SandboxCreateV2 returns; here
it shares the control plane's port. Output is kept per exec and streamed from
the offset the client asks for, so the client's resume-after-error works.

What the worker says about a sandbox that has ended is not documented, so it
is a setting (`state.ended_task`, one of ENDED_TASK_MODES), and the tests run
in each: "close" (open output streams end cleanly; later calls about a killed
exec answer NOT_FOUND), "not_found" (the task is gone: open streams fail with
NOT_FOUND, unread output is lost, and every later call about the task answers
NOT_FOUND, as the client's comments say the router does) and "unreachable"
(the worker is gone with it: streams and calls fail with UNAVAILABLE, which
the client retries; TaskExecWait it retries until the exec's deadline).
"""

from __future__ import annotations

from grpclib import GRPCError, Status
from modal_proto import task_command_router_pb2 as sr_pb2

from modal_emulator.grpc_service import client_streaming
from modal_emulator.sandbox import STDERR, STDOUT, Exec, Sandbox, SandboxFinished, StdinError
from modal_emulator.state import CLOSE, UNREACHABLE, EmulatorState


class CommandRouter:
    def __init__(self, state: EmulatorState):
        self.state = state

    def _sandbox(self, task_id: str) -> Sandbox:
        sandbox = self.state.by_task.get(task_id)
        if sandbox is None:
            raise GRPCError(Status.NOT_FOUND, f"Task {task_id} not found")
        if not sandbox.running and self.state.ended_task != CLOSE:
            raise self._gone(task_id)
        return sandbox

    def _gone(self, task_id: str) -> GRPCError:
        """What a call about an ended sandbox gets when its task (or worker) is gone."""
        if self.state.ended_task == UNREACHABLE:
            return GRPCError(Status.UNAVAILABLE, f"the worker of task {task_id} is unreachable")
        return GRPCError(Status.NOT_FOUND, f"Task {task_id} has finished")

    def _exec(self, task_id: str, exec_id: str) -> Exec:
        sandbox = self._sandbox(task_id)
        ex = sandbox.execs.get(exec_id)
        if ex is None:
            raise GRPCError(Status.NOT_FOUND, f"Exec {exec_id} not found")
        return ex

    async def TaskExecStart(self, request):
        sandbox = self._sandbox(request.task_id)
        env = dict(request.env)
        for source in request.secret_sources:
            if source.WhichOneof("source") == "env":
                env.update(source.env.contents)
        if not request.command_args:
            raise GRPCError(Status.INVALID_ARGUMENT, "exec needs a command")
        try:
            await sandbox.exec(
                request.exec_id, list(request.command_args),
                workdir=request.workdir if request.HasField("workdir") else None, env=env,
                timeout=request.timeout_secs or None,
                stdout=request.stdout_config != sr_pb2.TaskExecStdoutConfig.TASK_EXEC_STDOUT_CONFIG_DEVNULL,
                stderr=request.stderr_config != sr_pb2.TaskExecStderrConfig.TASK_EXEC_STDERR_CONFIG_DEVNULL)
        except SandboxFinished:
            why = f": {sandbox.result.exception}" if sandbox.result and sandbox.result.exception else ""
            raise GRPCError(Status.NOT_FOUND, f"Sandbox {sandbox.sandbox_id} has finished{why}") from None
        return sr_pb2.TaskExecStartResponse()

    async def TaskExecStdioRead(self, request):
        ex = self._exec(request.task_id, request.exec_id)
        fd = STDERR if request.file_descriptor == sr_pb2.TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDERR else STDOUT
        offset = request.offset
        streams_fail = self.state.ended_task != CLOSE
        while True:
            async with ex.changed:
                await ex.changed.wait_for(lambda start=offset: len(ex.output[fd]) > start or ex.done
                                          or (streams_fail and ex.killed_by_sandbox_end))
                if streams_fail and ex.killed_by_sandbox_end:
                    raise self._gone(request.task_id)   # what was not read yet is lost with the task
                data = bytes(ex.output[fd][offset:offset + 1024 * 1024])
                done = ex.done
            if data:
                offset += len(data)
                yield sr_pb2.TaskExecStdioReadResponse(data=data)
            elif done:
                return

    async def TaskExecStdinWrite(self, request):
        ex = self._exec(request.task_id, request.exec_id)
        await self._write_stdin(ex, request.offset, request.data, request.eof)
        return sr_pb2.TaskExecStdinWriteResponse()

    @client_streaming
    async def TaskExecStdinWriteStream(self, requests):
        """Start (task, exec, offset), data chunks, End (EOF); one answer at the end."""
        first = await anext(requests, None)
        if first is None or first.WhichOneof("payload") != "start":
            raise GRPCError(Status.INVALID_ARGUMENT, "a stdin stream begins with start")
        ex = self._exec(first.start.task_id, first.start.exec_id)
        offset = first.start.offset
        async for message in requests:
            kind = message.WhichOneof("payload")
            if kind == "data":
                await self._write_stdin(ex, offset, message.data, False)
                offset += len(message.data)
            elif kind == "end":
                await self._write_stdin(ex, offset, b"", True)
        return sr_pb2.TaskExecStdinWriteStreamResponse()

    async def TaskExecStdinStatus(self, request):
        ex = self._exec(request.task_id, request.exec_id)
        return sr_pb2.TaskExecStdinStatusResponse(num_bytes_written=ex.stdin_written, closed=ex.stdin_closed)

    @staticmethod
    async def _write_stdin(ex: Exec, offset: int, data: bytes, eof: bool) -> None:
        try:
            await ex.write_stdin(offset, data, eof)
        except StdinError as exc:
            raise GRPCError(Status.FAILED_PRECONDITION, str(exc)) from None

    async def TaskExecWait(self, request):
        ex = self._exec(request.task_id, request.exec_id)
        await ex.wait()
        return self._exit_status(sr_pb2.TaskExecWaitResponse, request.task_id, ex)

    async def TaskExecPoll(self, request):
        ex = self._exec(request.task_id, request.exec_id)
        if not ex.done:
            return sr_pb2.TaskExecPollResponse()
        return self._exit_status(sr_pb2.TaskExecPollResponse, request.task_id, ex)

    def _exit_status(self, response_cls, task_id: str, ex: Exec):
        if ex.killed_by_sandbox_end:
            # The container is gone with the process in it: no exit status to give.
            if self.state.ended_task == UNREACHABLE:
                raise self._gone(task_id)
            raise GRPCError(Status.NOT_FOUND, f"Exec {ex.exec_id} ended with its sandbox")
        code = ex.returncode if ex.returncode is not None else -1
        return response_cls(signal=-code) if code < 0 else response_cls(code=code)
