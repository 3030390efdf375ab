"""agent_sandbox: a coding agent that runs inside a per-job sandbox, and the
host-side backends (local bubblewrap, Docker, Modal) that start one."""

__version__ = "0.1.0"
