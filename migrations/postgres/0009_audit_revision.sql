-- Each audit event carries the revision of the write it belongs to, and the
-- event that commits a write carries what that write changed: the entities
-- its notification names, as the same JSON (`{"revision": n, "changed":
-- [...]}`). A replica that did not hear a notification (its Postgres
-- listener was down; on SQLite, another process's write) reads here, after
-- the events it has already read, what its poll finds committed, and spoils
-- only the cached answers that depend on it instead of everything. Writers
-- queue on the revision row from their first statement, so event ids follow
-- commit order. A write that cannot name what it changed (an import) leaves
-- `changed` empty and counts as a change to everything.
ALTER TABLE audit_events ADD COLUMN revision BIGINT;
ALTER TABLE audit_events ADD COLUMN changed TEXT;
