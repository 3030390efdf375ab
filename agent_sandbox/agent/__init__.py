"""Everything that runs INSIDE the sandbox: the agent loop, its tools, environment
detection, the lifeline and limit watch, the models and the offline playbook.

Started as `python -I -m agent_sandbox.agent ...` by every backend. Nothing here
imports the host's side (backends, isolation, the relay's host half).
"""
