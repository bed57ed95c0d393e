"""Trust primitives with no I/O and no dependency on the kit or any service: Merkle-tree logs
and their proofs, signed notes and checkpoints, DSSE envelopes and in-toto statements, runtime
bundles. The audit service, registry, gpuaas, the node agent and the CLI share them, so a
verifier outside the platform computes exactly what the platform computes."""
