package postgres

import "github.com/jackc/pgx/v5/pgxpool"

// Pool returns the store's connection pool, for tools that read or write
// the tables themselves, such as dirsync store migrate. Such a tool keeps to
// the schema of migrations/ and to the rules the package documentation
// gives (the bulk tables have no foreign keys: what refers to a row is the
// writer's to keep right). The pool is the store's: closing the store
// closes it; a store opened with OpenReadOnly hands out connections that
// refuse to write.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }
