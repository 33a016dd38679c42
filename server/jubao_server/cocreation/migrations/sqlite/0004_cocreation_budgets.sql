-- Privacy budgets of co-creation members (server/jubao_server/cocreation/tables.py holds the Table spec).

CREATE TABLE IF NOT EXISTS cocreation_budgets (
    scope TEXT NOT NULL,
    collaboration_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    record BLOB,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, collaboration_id, tenant_id, request_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cocreation_budgets__static (
    scope TEXT NOT NULL,
    collaboration_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    spent_epsilon_micro INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, collaboration_id, tenant_id)
) WITHOUT ROWID;
