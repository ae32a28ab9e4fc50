-- A user's workspaces and projects in id order (issue 6): workspace and
-- project search read one page of each relation after the cursor (the
-- workspaces a user owns; the projects of a workspace) from these indexes
-- and stop, instead of reading every workspace or project the user can
-- reach on every page. Each replaces the index on the first column alone,
-- whose lookups it serves too.
CREATE INDEX workspaces_owner_id ON workspaces (owner_id, id);
DROP INDEX workspaces_owner;
CREATE INDEX projects_workspace_id ON projects (workspace_id, id);
DROP INDEX projects_workspace;
