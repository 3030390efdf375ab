"""The host's isolation of a sandbox: the bubblewrap jail and its root launcher,
cgroups, the capped scratch filesystem, the network jail. Host side only."""
