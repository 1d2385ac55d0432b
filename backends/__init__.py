"""Storage backends: the Neo4j state store and the fsspec object store."""
