"""The model channel between the agent and the host: the agent's half (`agent`)
tunnels its SDK's HTTP calls over stdout/stdin, the host's half (`host`) adds the
key, forwards only to the configured endpoint and counts the budget."""
