-- dirsync store schema, version 2: the number of a run's changes, kept on
-- the run's row so that a run is listed without counting its run_changes.
-- The runs kept already get theirs from run_changes.

ALTER TABLE runs ADD COLUMN change_count integer NOT NULL DEFAULT 0;

UPDATE runs SET change_count = c.n
FROM (SELECT run_id, count(*) AS n FROM run_changes GROUP BY run_id) AS c
WHERE runs.id = c.run_id;
