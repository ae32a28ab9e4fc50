-- Warden's facts: users, the ownership chain, memberships, grants; app
-- credentials; the audit trail. Times are Unix milliseconds (INTEGER) so the
-- same queries run on Postgres and SQLite.

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('anonymous', 'registered')),
    email       TEXT,
    name        TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL REFERENCES users (id),
    visibility  TEXT NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'public')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX workspaces_owner ON workspaces (owner_id);

CREATE TABLE projects (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    visibility    TEXT NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'public')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX projects_workspace ON projects (workspace_id);

CREATE TABLE assets (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    visibility     TEXT NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'public')),
    public_access  TEXT NOT NULL DEFAULT 'none' CHECK (public_access IN ('none', 'read', 'write')),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX assets_project ON assets (project_id);

-- Primary keys lead with user_id: a decision looks up one principal's rows
-- for the few scopes of one resource chain.
CREATE TABLE workspace_members (
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (user_id, workspace_id)
);
CREATE INDEX workspace_members_workspace ON workspace_members (workspace_id);

CREATE TABLE project_members (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('editor', 'viewer')),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, project_id)
);
CREATE INDEX project_members_project ON project_members (project_id);

CREATE TABLE asset_grants (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    asset_id    TEXT NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
    permission  TEXT NOT NULL CHECK (permission IN ('read', 'write')),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, asset_id)
);
CREATE INDEX asset_grants_asset ON asset_grants (asset_id);

-- App credentials. Only the SHA-256 of a key is stored (CONTRACT §1.5).
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    scopes      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

-- Every state change, written in the transaction that makes it (CONTRACT §1.4).
CREATE TABLE audit_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    target_type  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    before       TEXT,
    after        TEXT,
    request_id   TEXT
);
CREATE INDEX audit_events_target ON audit_events (target_type, target_id, id);
