"""The chaos run (`just chaos --seed N --cycles K`): an isolated stack, many tenants on the
launch journey, a seeded fault schedule, then an audit of every promise. See
docs/operations.md, section Chaos."""
