package pgtest

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
)

// A server starts on loopback with fsync off, takes the superuser's
// password over TCP and refuses a wrong one, gives each test an empty
// database or schema of its own, and leaves nothing behind when stopped.
func TestServer(t *testing.T) {
	ctx := t.Context()
	s, stop, err := StartMain()
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	if s.Host != "127.0.0.1" || s.Port == 0 || s.User != Superuser || s.Password == "" || s.Version == "" {
		t.Errorf("server = %+v", s)
	}
	if os.Geteuid() == 0 {
		// initdb refuses root: the files belong to the postgres user.
		fi, err := os.Stat(filepath.Join(s.Dir, "data"))
		if err != nil {
			t.Fatal(err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid == 0 {
			t.Errorf("the data directory belongs to root")
		}
	}

	t.Run("NewDatabase", func(t *testing.T) {
		dsn := s.NewDatabase(t)
		c := connect(t, dsn)
		var fsync, db string
		if err := c.QueryRow(ctx, `SELECT current_setting('fsync'), current_database()`).Scan(&fsync, &db); err != nil {
			t.Fatal(err)
		}
		if fsync != "off" || db == "postgres" {
			t.Errorf("fsync %s, database %s; want off and a new database", fsync, db)
		}
		if _, err := c.Exec(ctx, `CREATE TABLE t (x int)`); err != nil {
			t.Fatal(err)
		}
		other := connect(t, s.NewDatabase(t))
		var n int
		if err := other.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 't'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("a second new database sees the first one's table: %d, %v", n, err)
		}
	})

	var schema string
	t.Run("NewSchema", func(t *testing.T) {
		dsn := s.NewSchema(t)
		c := connect(t, dsn)
		if err := c.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil || schema == "" || schema == "public" {
			t.Fatalf("current_schema() = %q, %v; want the new schema", schema, err)
		}
		if _, err := c.Exec(ctx, `CREATE TABLE t (x int)`); err != nil {
			t.Fatal(err)
		}
		other := connect(t, s.NewSchema(t))
		if _, err := other.Exec(ctx, `CREATE TABLE t (x int)`); err != nil {
			t.Errorf("a second new schema cannot have its own table t: %v", err)
		}
	})
	t.Run("SchemaDroppedAfterTest", func(t *testing.T) {
		c := connect(t, s.DSN(sharedDB))
		var n int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, schema).Scan(&n); err != nil || n != 0 {
			t.Errorf("schema %s after its test: %d, %v; want it dropped", schema, n, err)
		}
	})

	t.Run("WrongPassword", func(t *testing.T) {
		u, err := url.Parse(s.DSN("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(s.User, "not-"+s.Password)
		c, err := pgx.Connect(ctx, u.String())
		if err == nil {
			c.Close(ctx)
			t.Fatal("a wrong password connected")
		}
		if !strings.Contains(err.Error(), "password authentication failed") {
			t.Errorf("error = %v, want a failed password authentication", err)
		}
	})

	dir, addr := s.Dir, net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	stop()
	stopped = true
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the server's folder after Stop: %v, want it removed", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Stop", addr)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("a second Stop: %v", err)
	}
}

// Start stops the server when the test ends.
func TestStart(t *testing.T) {
	var dir string
	t.Run("Test", func(t *testing.T) {
		s := Start(t)
		dir = s.Dir
		connect(t, s.DSN("postgres"))
	})
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the server's folder after its test: %v, want it removed", err)
	}
}

// Without PostgreSQL's binaries the error says what to install.
func TestMissingBinaries(t *testing.T) {
	old := debianInitdb
	debianInitdb = filepath.Join(t.TempDir(), "*", "bin", "initdb")
	defer func() { debianInitdb = old }()
	t.Setenv("PATH", t.TempDir())
	_, _, err := StartMain()
	if err == nil || !strings.Contains(err.Error(), "install Debian's postgresql package") {
		t.Errorf("StartMain without binaries = %v, want an error saying to install Debian's postgresql package", err)
	}
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// Halt stops the server as a crash would: connections break, new ones are
// refused, an open transaction is lost and a committed one kept once
// Resume has started it again on its port.
func TestHaltResume(t *testing.T) {
	ctx := t.Context()
	s := Start(t)
	dsn := s.NewDatabase(t)
	c := connect(t, dsn)
	if _, err := c.Exec(ctx, "CREATE TABLE t (v text); INSERT INTO t VALUES ('committed')"); err != nil {
		t.Fatal(err)
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO t VALUES ('open')"); err != nil {
		t.Fatal(err)
	}
	if err := s.Halt(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err == nil {
		t.Fatalf("a transaction committed on a halted server")
	}
	if _, err := pgx.Connect(ctx, dsn); err == nil {
		t.Fatalf("a halted server took a connection")
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	var got []string
	rows, err := connect(t, dsn).Query(ctx, "SELECT v FROM t ORDER BY v")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v string
		rows.Scan(&v)
		got = append(got, v)
	}
	if rows.Err() != nil || len(got) != 1 || got[0] != "committed" {
		t.Fatalf("after Resume the table holds %q (%v), want the committed row alone", got, rows.Err())
	}
}
