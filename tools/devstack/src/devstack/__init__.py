"""devstack: the embedded local stack (Kafka in KRaft mode, PostgreSQL, every service).

`devstack infra` starts Kafka and PostgreSQL under the git-ignored state folder (.state/),
`devstack up` also starts the whole fleet declared in deploy/fleet.toml. The test suite imports
`devstack.infra.ensure_infra()` to get the same Kafka and PostgreSQL.
"""
