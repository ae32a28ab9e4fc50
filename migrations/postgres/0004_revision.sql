-- The store's revision (issue 6): one counter bumped by every committed
-- write, in the write's own transaction. Its row lock orders writers, so
-- revisions follow commit order; a revision token "at least as fresh as N"
-- means "every write up to N is visible".
CREATE TABLE warden_revision (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    value  BIGINT NOT NULL
);
INSERT INTO warden_revision (id, value) VALUES (1, 0);
