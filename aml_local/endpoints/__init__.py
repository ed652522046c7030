"""Online endpoints on this machine: the per-endpoint front end (`router`) that stands where Azure's managed online
endpoint front end stands, before the endpoint's deployments."""
