"""dynamod-isolation: cgroups v2 and namespaces for dynamod services (docs/isolation.md)."""
