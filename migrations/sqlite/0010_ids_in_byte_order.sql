-- Ids in byte order: SQLite's TEXT compares with BINARY unless told
-- otherwise, so its ids already sort and compare byte by byte, as 0010 of
-- migrations/postgres makes PostgreSQL's. Nothing to change here; the file
-- keeps both backends' migration versions alike.
SELECT 1;
