package sqlite

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// BenchmarkApplyCreates applies a first sync's worth of creates (a mailbox
// with an alias and a group each) into a new store file, with multi-row
// INSERTs (bulk.go) and one statement a row:
//
//	go test -run '^$' -bench ApplyCreates ./host/store/sqlite/
func BenchmarkApplyCreates(b *testing.B) {
	const n = 20000
	changes := make([]store.Change, n)
	for i := range changes {
		changes[i] = store.Change{Kind: sdk.ChangeCreate, After: &store.Mailbox{
			DirID: fmt.Sprintf("%08x-guid", i*7919%n), DN: fmt.Sprintf("cn=user%06d,ou=people,dc=example,dc=com", i),
			Kind: sdk.KindUser, Primary: fmt.Sprintf("user%06d@example.com", i), DisplayName: fmt.Sprintf("User %d", i),
			Aliases: []string{fmt.Sprintf("u%06d@example.com", i)}, Source: sdk.SourceLDAP,
			Groups: []string{fmt.Sprintf("group%02d", i%50)},
		}}
	}
	for _, bulk := range []bool{true, false} {
		b.Run(fmt.Sprintf("bulk=%v", bulk), func(b *testing.B) {
			bulkCreates = bulk
			defer func() { bulkCreates = true }()
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				s, err := Open(filepath.Join(b.TempDir(), fmt.Sprintf("%d.db", i)))
				if err != nil {
					b.Fatal(err)
				}
				for g := range 50 {
					if err := s.AddGroup(b.Context(), "example.com", fmt.Sprintf("group%02d", g)); err != nil {
						b.Fatal(err)
					}
				}
				run := &store.Run{Domain: "example.com", Started: time.Now(), Ended: time.Now(), Outcome: store.OutcomeOK, Generation: 50}
				b.StartTimer()
				if err := s.Apply(b.Context(), "example.com", changes, run); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				s.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/create")
		})
	}
}
