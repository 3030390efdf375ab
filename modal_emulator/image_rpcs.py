"""The image RPCs: ImageGetOrCreate starts a build (or finds one), and
ImageJoinStreaming streams its log, then its result, as Modal's builders do.
A mixin of the control plane; the builds themselves are in images.py."""

from __future__ import annotations

import asyncio
import time

from modal_proto import api_pb2

from modal_emulator import images
from modal_emulator.faults import BUILD_FAILURE

JOIN_SLICE = 55.0   # the client asks for at most this per ImageJoinStreaming call, then joins again


class ImageRPCs:
    state = None   # EmulatorState, set by the control plane

    async def ImageGetOrCreate(self, request):
        record = self.state.images.get_or_create(request.image)
        build, started = self.state.images.start(record, self.state.runtime)
        if self.state.faults.take("ImageGetOrCreate", kind=BUILD_FAILURE):
            # This build fails; the next request for the same image builds again, as on Modal.
            result = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_FAILURE,
                                           exception="injected build failure")
            return api_pb2.ImageGetOrCreateResponse(image_id=record.image_id, result=result,
                                                    metadata=images.metadata())
        if build.done.is_set() and not started:   # built before: no log to stream
            return api_pb2.ImageGetOrCreateResponse(image_id=record.image_id, result=build.result(),
                                                    metadata=images.metadata())
        return api_pb2.ImageGetOrCreateResponse(image_id=record.image_id)   # building: join it

    async def ImageFromId(self, request):
        record = self.state.images.by_id[request.image_id]   # unknown: NOT_FOUND
        if not any(build.done.is_set() and not build.error for build in record.builds.values()):
            raise KeyError(request.image_id)   # as on Modal: only a built image can be looked up
        # (A sandbox waits for its build for the runtime that runs it, as after a runtime switch.)
        return api_pb2.ImageFromIdResponse(image_id=record.image_id, metadata=images.metadata())

    async def ImageJoinStreaming(self, request):
        record = self.state.images.by_id[request.image_id]
        build = self.state.images.build(record, self.state.runtime)
        sent = int(request.last_entry_id or 0)
        deadline = time.monotonic() + min(request.timeout or JOIN_SLICE, JOIN_SLICE)
        while True:
            build.changed.clear()
            if sent < len(build.log):
                lines, sent = build.log[sent:], len(build.log)
                yield api_pb2.ImageJoinStreamingResponse(
                    task_logs=[api_pb2.TaskLogs(data=line + "\n", file_descriptor=api_pb2.FILE_DESCRIPTOR_STDOUT,
                                                timestamp=time.time()) for line in lines],
                    entry_id=str(sent))
                continue
            if build.done.is_set():
                yield api_pb2.ImageJoinStreamingResponse(result=build.result(), metadata=images.metadata(),
                                                         entry_id=str(sent), eof=True)
                return
            try:
                await asyncio.wait_for(build.changed.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return   # the client joins again from the last entry it got
