package sqlite

import (
	"database/sql"
	"fmt"
	"strings"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// bulkRows is how many rows one multi-row INSERT of a batch of creates
// writes. A first sync of 100,000 users makes 400,000 rows; one statement
// a row costs more in the driver and in SQLite's statement machinery than
// the rows themselves (BenchmarkApplyCreates).
const bulkRows = 64

// bulkCreates turns the multi-row path off when false (for
// BenchmarkApplyCreates, which compares both).
var bulkCreates = true

// multiInsert is an INSERT of rows of the same columns: bulkRows at a time,
// and the rows left at the end of a batch in one more statement, each row
// count through its own statement, prepared once an Apply when first
// needed.
type multiInsert struct {
	table, tail string
	cols        []string
	stmts       map[int]*sql.Stmt // by row count
	args        []any             // the rows not yet written, len(cols) values each
}

// insertValues is "INSERT INTO table (cols) VALUES (?, …), …" for rows rows,
// followed by tail.
func insertValues(table string, cols []string, rows int, tail string) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	return "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES " +
		strings.TrimSuffix(strings.Repeat(row+", ", rows), ", ") + tail
}

// exec writes the queued rows in one statement.
func (m *multiInsert) exec(a *applier) error {
	rows := len(m.args) / len(m.cols)
	st := m.stmts[rows]
	if st == nil {
		var err error
		if st, err = a.tx.PrepareContext(a.ctx, insertValues(m.table, m.cols, rows, m.tail)); err != nil {
			return fmt.Errorf("prepare an insert into %s: %w", m.table, err)
		}
		if m.stmts == nil {
			m.stmts = map[int]*sql.Stmt{}
		}
		m.stmts[rows] = st
	}
	_, err := st.ExecContext(a.ctx, m.args...)
	m.args = m.args[:0]
	return err
}

// add queues a row and writes bulkRows of them once there are as many.
func (m *multiInsert) add(a *applier, row ...any) error {
	m.args = append(m.args, row...)
	if len(m.args) < bulkRows*len(m.cols) {
		return nil
	}
	return m.exec(a)
}

// flush writes the queued rows.
func (m *multiInsert) flush(a *applier) error {
	if len(m.args) == 0 {
		return nil
	}
	return m.exec(a)
}

func (m *multiInsert) close() {
	for _, st := range m.stmts {
		st.Close()
	}
}

// createBatch writes the creates cs (a mailbox row, its address rows and
// its membership rows each) with multi-row INSERTs, in a savepoint. A
// batch that fails is rolled back to the savepoint and written again one
// create at a time, so that the error names the create that failed.
func (a *applier) createBatch(cs []*store.Change) error {
	if err := a.nextMailboxID(); err != nil {
		return err
	}
	if _, err := a.tx.ExecContext(a.ctx, "SAVEPOINT bulk"); err != nil {
		return err
	}
	first := a.nextID
	err := a.createRows(cs)
	if err == nil {
		_, err = a.tx.ExecContext(a.ctx, "RELEASE bulk")
		return err
	}
	if _, rerr := a.tx.ExecContext(a.ctx, "ROLLBACK TO bulk"); rerr != nil {
		return fmt.Errorf("%w (and rolling the batch back: %v)", err, rerr)
	}
	if _, rerr := a.tx.ExecContext(a.ctx, "RELEASE bulk"); rerr != nil {
		return rerr
	}
	a.nextID = first
	for _, c := range cs {
		delete(a.created, c.After.DirID)
	}
	for _, c := range cs {
		if err := a.create(c); err != nil {
			return changeError(c, err)
		}
	}
	return nil
}

// createRows queues and writes the rows of the creates cs.
func (a *applier) createRows(cs []*store.Change) error {
	rows := make([]newRow, len(cs))
	for i, c := range cs {
		var err error
		if rows[i], err = a.newMailbox(c); err != nil {
			return err
		}
		if err := a.mailboxRows.add(a, rows[i].id, a.domain, rows[i].set[0].addr, rows[i].kind, c.After.DisplayName,
			sdk.SourceLDAP, c.After.DirID, c.After.DN); err != nil {
			return err
		}
	}
	if err := a.mailboxRows.flush(a); err != nil {
		return err
	}
	for _, r := range rows {
		for i, ad := range r.set {
			if err := a.addressRows.add(a, ad.addr, ad.domain, r.id, i == 0); err != nil {
				return err
			}
		}
	}
	if err := a.addressRows.flush(a); err != nil {
		return err
	}
	for i, c := range cs {
		for _, g := range c.After.Groups {
			gid, err := a.group(g)
			if err != nil {
				return err
			}
			if err := a.memberRows.add(a, rows[i].id, gid, sdk.SourceLDAP); err != nil {
				return err
			}
		}
	}
	return a.memberRows.flush(a)
}

// nextMailboxID reads, once an Apply, the id the next mailbox gets: ids
// are never reused (AUTOINCREMENT), and creates give them explicitly, so
// that a batch knows its rows' ids without reading them back.
func (a *applier) nextMailboxID() error {
	if a.nextID != 0 {
		return nil
	}
	return a.tx.QueryRowContext(a.ctx, `SELECT max(
		COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'mailboxes'), 0),
		COALESCE((SELECT max(id) FROM mailboxes), 0)) + 1`).Scan(&a.nextID)
}

// newRow is a mailbox a create makes: its id and normalized fields.
type newRow struct {
	id   int64
	set  []address
	kind string
}

// newMailbox checks the mailbox of create c and gives it the next id.
func (a *applier) newMailbox(c *store.Change) (newRow, error) {
	m := c.After
	if m == nil {
		return newRow{}, fmt.Errorf("create without After")
	}
	set, err := addressSet(m)
	if err != nil {
		return newRow{}, err
	}
	kind, err := store.NormKind(m.Kind)
	if err != nil {
		return newRow{}, err
	}
	if err := a.nextMailboxID(); err != nil {
		return newRow{}, err
	}
	r := newRow{id: a.nextID, set: set, kind: kind}
	a.nextID++
	a.created[m.DirID] = r.id
	return r, nil
}
