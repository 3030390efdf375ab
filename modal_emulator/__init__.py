"""A local emulator of the part of Modal's API our Modal backend uses.

The real `modal` client (pinned, see pyproject.toml) talks to it over gRPC when
MODAL_SERVER_URL points here, so the backend is tested offline end to end:

    python -m modal_emulator --port 50551
    MODAL_SERVER_URL=http://127.0.0.1:50551 MODAL_TOKEN_ID=x MODAL_TOKEN_SECRET=y python ...

Covered: App.lookup, Image (any definition; see images), Mount uploads (inline
and blob), Secret.from_dict, Volume.ephemeral/listdir/read_file, Sandbox
create/exec/stdio/wait/poll/terminate/list/tags, entrypoint sandboxes, idle
and lifetime timeouts, exec timeouts, block_network, injected failures and an
optional creation rate limit. Not covered (answered UNIMPLEMENTED or ignored):
Functions, Queues, Dicts, named Secrets, snapshots, tunnels, PTYs, sandbox
stdin and entrypoint stdio, outbound allowlists (an open network reaches the internet, never the host or private addresses), image
builds (a definition maps to the host's environment or one local Docker
image). With bubblewrap, CPU/memory limits are not enforced and processes do
not outlive their exec; with Docker they are and they do.

Modules, one concept each:
    server          wires the gRPC services and the HTTP server together
    grpc_service    adapts a handler object to a generated grpclib service base
    control_plane   the control-plane RPCs (apps, images, mounts, volumes, sandboxes)
    command_router  the worker-side TaskCommandRouter RPCs (exec, stdio, wait)
    sandbox         one sandbox's lifecycle: timeouts, execs, termination
    jail            the bubblewrap jail a sandbox's processes run in (BwrapRuntime)
    docker_runtime  or a Docker container per sandbox, when an engine is reachable
    images          what an image definition maps to (the host's environment)
    volumes         volume storage, synced from the sandbox only at termination
    storage         content-addressed files (mount uploads) and blobs
    http_server     blob uploads, volume block downloads, the admin endpoints
    faults          failures injected on request (for retry and error tests)
    ratelimit       the sandbox-creation rate limit (off unless asked for)
"""
