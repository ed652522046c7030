"""`python -m aml_local.endpoints.router --state-dir DIR`: one endpoint's router (server.py)."""

from aml_local.endpoints.router.server import main

if __name__ == "__main__":
    main()
