-- dirsync store schema, version 3: the directory state a domain's last
-- applied sync left (store.DirState), for the next run to read a delta from
-- its cookie, and how each run read the directory.

-- One row per domain, replaced or deleted by every Apply in its
-- transaction. Not a bulk table (a row per domain), so it keeps its
-- foreign key, as leases and settings do.
CREATE TABLE dir_state (
	domain  text COLLATE "C" PRIMARY KEY REFERENCES domains (name),
	key     text NOT NULL,
	cookie  bytea,                -- NULL if empty
	full_at timestamptz NOT NULL, -- when the last full read started
	head    bytea,                -- the host's summary of entries, kept byte for byte; NULL if empty
	entries bytea                 -- the host's encoding, kept byte for byte; NULL if empty
);

-- store.ReadFull or store.ReadDelta; '' for a run that was only started.
ALTER TABLE runs ADD COLUMN read text NOT NULL DEFAULT '';
