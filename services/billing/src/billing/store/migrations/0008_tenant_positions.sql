-- Each tenant's transfers are numbered 1, 2, 3, ... in commit order (`tenant_seq`), so a
-- reader paging a tenant's ledger by position (GET .../ledger?after=, any incremental
-- reader) never skips a row. The global `seq` (an IDENTITY with CACHE 1000) cannot: each
-- connection hands out its own cached range, so a higher seq often commits before a lower
-- one and a reader that already passed it never sees the lower one. A tenant's position is
-- taken from tenants.last_transfer_seq by the very statement that inserts the transfers;
-- that UPDATE holds the tenant's row lock (which every movement of a tenant already takes
-- first) until commit, so the next writer of that tenant reads the number only after this
-- one's rows are visible.
ALTER TABLE tenants ADD COLUMN last_transfer_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE transfers ADD COLUMN tenant_seq bigint;

-- Number the rows already there in their old order (the owner runs migrations; the
-- append-only trigger is off for this one statement only).
ALTER TABLE transfers DISABLE TRIGGER transfers_append_only;
UPDATE transfers t SET tenant_seq = n.position
  FROM (SELECT id, row_number() OVER (PARTITION BY tenant_id ORDER BY seq) AS position
          FROM transfers) n
 WHERE n.id = t.id;
ALTER TABLE transfers ENABLE TRIGGER transfers_append_only;
UPDATE tenants t SET last_transfer_seq = m.last
  FROM (SELECT tenant_id, max(tenant_seq) AS last FROM transfers GROUP BY tenant_id) m
 WHERE m.tenant_id = t.id;

ALTER TABLE transfers ALTER COLUMN tenant_seq SET NOT NULL;
CREATE UNIQUE INDEX transfers_tenant_position ON transfers (tenant_id, tenant_seq);
DROP INDEX transfers_tenant_seq;
