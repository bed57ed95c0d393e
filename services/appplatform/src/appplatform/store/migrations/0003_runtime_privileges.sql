-- What the runtime role (the login appplatform serves with) may not do, beyond the kit's
-- grants (platformkit 0002): instances and replicas are never deleted (an instance ends
-- stopped or failed, a replica gone; their rows are the record of what was asked of gpuaas).
SELECT for_runtime_role('REVOKE DELETE, TRUNCATE ON instances, replicas FROM %I');
