-- dirsync store schema, version 4: a directory state in chunks
-- (store.ChunkStore).

-- The chunks of a domain's chunked store.DirState, whose dir_state row then
-- has entries NULL: a row of each table per chunk, replaced or patched by
-- Apply with the dir_state row. The summaries are a table of their own, so
-- that a delta reads all of them (about 15,000 of 1.3 KB at a million
-- users) without a page of the data (3.5 KB a chunk). They keep their
-- foreign key, as dir_state does: its check costs a full write of 15,000
-- chunks about a tenth of its time (the rows are large and few beside a
-- bulk table's), and a patch's updates none.
--
-- toast_tuple_target: a row up to a page (8160 bytes) stays in the table's
-- own page instead of going to TOAST past 2 KB, so that reading a chunk is
-- one heap tuple, not a TOAST index lookup and two TOAST rows. The data is
-- the host's compressed encoding: STORAGE EXTERNAL keeps PostgreSQL from
-- trying to compress the rare row that is moved out of line all the same.
CREATE TABLE dir_state_summaries (
	domain  text COLLATE "C" NOT NULL REFERENCES domains (name),
	seq     bigint NOT NULL,
	summary bytea, -- kept byte for byte; NULL if empty
	PRIMARY KEY (domain, seq)
) WITH (toast_tuple_target = 8160);

CREATE TABLE dir_state_chunks (
	domain text COLLATE "C" NOT NULL REFERENCES domains (name),
	seq    bigint NOT NULL,
	data   bytea, -- kept byte for byte; NULL if empty
	PRIMARY KEY (domain, seq)
) WITH (toast_tuple_target = 8160);
ALTER TABLE dir_state_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
