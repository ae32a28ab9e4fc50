-- Ids and keys compare byte by byte (COLLATE "C"), as SQLite's TEXT does
-- (issue 6). Under the database's default collation (C.UTF-8, en_US.UTF-8,
-- ...) every comparison in an index descent goes through the C library's
-- strcoll, on copies of both strings; a byte comparison is a memcmp. The
-- fact statement of a check makes seven primary-key probes, and a descent
-- into a table of a million assets makes more comparisons than into one of
-- ten thousand: on the bench world of 1,010,000 assets PostgreSQL's CPU per
-- uncached check fell from 49-61 to 44-51 us (32-37 at 20,000 assets either
-- way). It also makes the id order of searches and exports the same on
-- both backends and on every server, whatever locale the database was
-- created with (en_US.UTF-8 sorts "B" after "a"; bytes sort it before).
-- Human text (names, emails) keeps the database's collation.
--
-- The two triggers whose WHEN clauses read a column changed below are made
-- again after it, as 0005 made them (a column a trigger reads cannot change
-- its type).
DROP TRIGGER assets_workspace_on_move ON assets;
DROP TRIGGER projects_workspace_on_move ON projects;
ALTER TABLE users
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN merged_into TYPE TEXT COLLATE "C";
ALTER TABLE workspaces
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN owner_id TYPE TEXT COLLATE "C";
ALTER TABLE projects
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN workspace_id TYPE TEXT COLLATE "C";
ALTER TABLE assets
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN project_id TYPE TEXT COLLATE "C",
    ALTER COLUMN workspace_id TYPE TEXT COLLATE "C";
ALTER TABLE workspace_members
    ALTER COLUMN user_id TYPE TEXT COLLATE "C",
    ALTER COLUMN workspace_id TYPE TEXT COLLATE "C";
ALTER TABLE project_members
    ALTER COLUMN user_id TYPE TEXT COLLATE "C",
    ALTER COLUMN project_id TYPE TEXT COLLATE "C";
ALTER TABLE asset_grants
    ALTER COLUMN user_id TYPE TEXT COLLATE "C",
    ALTER COLUMN asset_id TYPE TEXT COLLATE "C";
ALTER TABLE identities
    ALTER COLUMN provider TYPE TEXT COLLATE "C",
    ALTER COLUMN subject TYPE TEXT COLLATE "C",
    ALTER COLUMN user_id TYPE TEXT COLLATE "C";
ALTER TABLE anonymous_tokens
    ALTER COLUMN user_id TYPE TEXT COLLATE "C";
ALTER TABLE invites
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN workspace_id TYPE TEXT COLLATE "C",
    ALTER COLUMN project_id TYPE TEXT COLLATE "C",
    ALTER COLUMN token_hash TYPE TEXT COLLATE "C";
ALTER TABLE api_keys
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN key_hash TYPE TEXT COLLATE "C";
ALTER TABLE audit_events
    ALTER COLUMN target_type TYPE TEXT COLLATE "C",
    ALTER COLUMN target_id TYPE TEXT COLLATE "C";
ALTER TABLE rate_limits
    ALTER COLUMN bucket TYPE TEXT COLLATE "C";

CREATE TRIGGER assets_workspace_on_move BEFORE UPDATE OF project_id ON assets
    FOR EACH ROW WHEN (OLD.project_id IS DISTINCT FROM NEW.project_id)
    EXECUTE FUNCTION assets_set_workspace();
CREATE TRIGGER projects_workspace_on_move AFTER UPDATE OF workspace_id ON projects
    FOR EACH ROW WHEN (OLD.workspace_id IS DISTINCT FROM NEW.workspace_id)
    EXECUTE FUNCTION projects_move_assets();
