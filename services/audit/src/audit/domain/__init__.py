"""audit's pure core: which events are privileged actions and how each becomes an AU-3 audit
record (the leaf bytes come from gpucloud_trust.records)."""
