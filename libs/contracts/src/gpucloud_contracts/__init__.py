"""gpucloud_contracts: what the services agree on, generated from contracts/ or written once.

- `events/`, `catalog`: event payload Structs and the event type -> topic catalog, generated
  from contracts/asyncapi (`just contracts`); `specs`: the catalog's shapes;
- `gpus`: the GPU catalog (SKUs, MIG profiles, list prices);
- `node_sync`: the HTTP contract between gpuaas and its node agents.

Depends on nothing of ours (msgspec and the standard library only).
"""
