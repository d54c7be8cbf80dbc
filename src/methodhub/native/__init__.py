"""methodhub's own front door: what neither cloud has (queued calls, ``/calls``), authenticated as
Azure's service API is."""
