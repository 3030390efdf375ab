"""A local emulator of the part of Modal's API our Modal backend uses.

The real `modal` client (pinned, see pyproject.toml) talks to it over gRPC when
MODAL_SERVER_URL points here, so the backend is tested offline end to end:

    python -m modal_emulator --port 50551
    MODAL_SERVER_URL=http://127.0.0.1:50551 MODAL_TOKEN_ID=x MODAL_TOKEN_SECRET=y python ...

Modules, one concept each:
    server          wires the gRPC services and the HTTP server together
    grpc_service    adapts a handler object to a generated grpclib service base
    control_plane   the control-plane RPCs (apps, images, mounts, volumes, sandboxes)
    command_router  the worker-side TaskCommandRouter RPCs (exec, stdio, wait)
    sandbox         one sandbox's lifecycle: timeouts, execs, termination
    jail            the bubblewrap command line a sandbox's processes run in
    images          what an image definition maps to (the host's environment)
    volumes         volume storage, synced from the sandbox only at termination
    storage         content-addressed files (mount uploads) and blobs
    http_server     blob uploads, volume block downloads, the admin endpoints
    faults          failures injected on request (for retry and error tests)
    ratelimit       the sandbox-creation rate limit (off unless asked for)
"""
