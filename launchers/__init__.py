"""Launchers: Neo4j (jar, docker, external), the API server and the compute pool."""
