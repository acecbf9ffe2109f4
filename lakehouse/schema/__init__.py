"""Schema evolution driven by the registry: writer schemas resolved against Iceberg tables by
field id, safe changes applied, everything else handed to the stream's declared policy.

docs/schema-evolution.md describes the changes, the policies and how to resume and replay.
"""
