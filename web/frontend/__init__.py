"""The web app: upload datasets, follow the agent live, get the results (see app.py)."""
