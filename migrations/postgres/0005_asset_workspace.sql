-- Each asset's workspace, kept by the database (issue 6): searches within a
-- workspace walk the index (workspace_id, id) in id order and stop after a
-- page, instead of joining and sorting every asset of the workspace per
-- page. No code writes the column: the triggers below derive it from the
-- asset's project when an asset is added or moved, and follow a project
-- moved to another workspace.
ALTER TABLE assets ADD COLUMN workspace_id TEXT;
UPDATE assets a SET workspace_id = p.workspace_id FROM projects p WHERE p.id = a.project_id;
ALTER TABLE assets ALTER COLUMN workspace_id SET NOT NULL;
CREATE INDEX assets_workspace ON assets (workspace_id, id);

CREATE FUNCTION assets_set_workspace() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.workspace_id := (SELECT workspace_id FROM projects WHERE id = NEW.project_id);
    RETURN NEW;
END;
$$;
CREATE TRIGGER assets_workspace_on_insert BEFORE INSERT ON assets
    FOR EACH ROW EXECUTE FUNCTION assets_set_workspace();
CREATE TRIGGER assets_workspace_on_move BEFORE UPDATE OF project_id ON assets
    FOR EACH ROW WHEN (OLD.project_id IS DISTINCT FROM NEW.project_id)
    EXECUTE FUNCTION assets_set_workspace();

CREATE FUNCTION projects_move_assets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE assets SET workspace_id = NEW.workspace_id WHERE project_id = NEW.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER projects_workspace_on_move AFTER UPDATE OF workspace_id ON projects
    FOR EACH ROW WHEN (OLD.workspace_id IS DISTINCT FROM NEW.workspace_id)
    EXECUTE FUNCTION projects_move_assets();
