"""Scripts the playbook copies into the outputs and runs; each also runs on its own."""
