"""A local emulator of the part of Modal's API our Modal backend uses.

The real `modal` client (pinned, see pyproject.toml) talks to it over gRPC when
MODAL_SERVER_URL points here, so the backend is tested offline end to end:

    python -m modal_emulator --port 50551
    MODAL_SERVER_URL=http://127.0.0.1:50551 MODAL_TOKEN_ID=x MODAL_TOKEN_SECRET=y python ...

Covered: App.lookup, Image definitions and builds (streamed build logs),
Mount uploads (inline and blob), Secret.from_dict, Volume.ephemeral (v1 and
v2)/listdir/read_file, Sandbox create/exec/stdio/wait/poll/terminate/list/tags,
entrypoint sandboxes, idle and lifetime timeouts, exec timeouts,
block_network, idempotency keys, rate limits with Modal's retry policy,
injected failures. Not covered (answered UNIMPLEMENTED or ignored):
Functions, Queues, Dicts, named Secrets, snapshots, tunnels, PTYs, sandbox
stdin and entrypoint stdio, outbound allowlists (an open network reaches the internet,
never the host or private addresses). Where Modal's behaviour is undocumented
(what an exec's stream does when its sandbox ends) each plausible behaviour is
a setting, and tests run in each.

Modules, one concept each:
    server          wires the gRPC services and the HTTP server together
    grpc_service    adapts a handler object to a generated grpclib service base
    idempotency     answers kept per idempotency key, for the client's retries
    control_plane   the control-plane RPCs (apps, mounts, volumes, sandboxes)
    image_rpcs      the image RPCs: start a build, stream its log
    images          image definitions and their builds (bwrap: the host's environment)
    image_builds    real Docker builds of a definition's recipe (docker runtime)
    command_router  the worker-side TaskCommandRouter RPCs (exec, stdio, wait)
    sandbox         one sandbox's lifecycle: timeouts, execs, termination
    jail            the bubblewrap jail a sandbox's processes run in (BwrapRuntime)
    docker_runtime  or a Docker container per sandbox, when an engine is reachable
    volumes         volume storage, synced from the sandbox only at termination
    storage         content-addressed files (mount uploads) and blobs
    http_server     blob uploads, volume block downloads, the admin endpoints
    faults          failures injected on request (for retry and error tests)
    ratelimit       the sandbox-creation rate limit (off unless asked for)
    prebuild        builds the images the tests use, before they run
"""
