"""`python -m agent_sandbox.agent`: the coding agent's entry point inside the sandbox."""

from agent_sandbox.agent.loop import main

if __name__ == "__main__":
    raise SystemExit(main())
