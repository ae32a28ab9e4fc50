-- Management API (issue 4): invites. An invite is bound to one email
-- (stored lower-cased), grants one role in one workspace or one project,
-- expires, and is used at most once. Only the SHA-256 of its token is kept.
CREATE TABLE invites (
    id            TEXT PRIMARY KEY,
    token_hash    TEXT NOT NULL UNIQUE,
    workspace_id  TEXT REFERENCES workspaces (id) ON DELETE CASCADE,
    project_id    TEXT REFERENCES projects (id) ON DELETE CASCADE,
    email         TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    accepted_by   TEXT,
    accepted_at   BIGINT,
    revoked_at    BIGINT,
    CHECK ((workspace_id IS NULL) <> (project_id IS NULL)),
    CHECK (project_id IS NULL OR role <> 'owner')
);
CREATE INDEX invites_workspace ON invites (workspace_id);
CREATE INDEX invites_project ON invites (project_id);
