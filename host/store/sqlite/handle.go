package sqlite

import "database/sql"

// DB returns the store's database handle, for tools that read or write the
// tables themselves, such as dirsync store migrate. Such a tool keeps to the
// schema of this package (see migrations) and, on a store opened with Open,
// takes no write lock of its own: writes through DB do not queue behind the
// store's writers of this process. The handle is the store's: closing the
// store closes it.
func (s *Store) DB() *sql.DB { return s.db }
