package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/internal/pgtest"
	"github.com/dirsync/dirsync/host/internal/secrets"
	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/postgres"
)

const (
	replicaToken  = "replica-admin-token-for-the-test"
	smallDomains  = 10
	smallUsers    = 30
	bigUsers      = 20000
	replicaTTL    = 3 * time.Second
	replicaPeriod = 2 * time.Second
)

// replicaSet is three dirsync serve processes on one PostgreSQL store and
// one slapd.
type replicaSet struct {
	*env
	pg    *pgtest.Server
	dsn   string
	st    *postgres.Store
	procs []*serveProc
	// configs are the replicas' config files: one store, one token, a
	// listener each.
	configs []string
}

// runsOf reads every run of a domain from the store, oldest first.
func (r *replicaSet) runsOf(domain string) []store.Run {
	r.t.Helper()
	var all []store.Run
	before := int64(0)
	for {
		page, err := r.st.RunsPage(context.Background(), domain, 1000, before)
		if err != nil {
			r.t.Fatalf("runs of %s: %v", domain, err)
		}
		all = append(all, page...)
		if len(page) < 1000 {
			break
		}
		before = page[len(page)-1].ID
	}
	slices.Reverse(all)
	return all
}

// mailboxCount is the number of mailboxes of a domain in the store.
func (r *replicaSet) mailboxCount(domain string) int {
	r.t.Helper()
	m, err := r.st.Mailboxes(context.Background(), domain)
	if err != nil {
		r.t.Fatalf("mailboxes of %s: %v", domain, err)
	}
	return len(m)
}

// api calls a replica's API as the admin token.
func (p *serveProc) api(method, path string, body any) (int, []byte) {
	p.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.base+"/api/v1"+path, rd)
	req.Header.Set("Authorization", "Bearer "+replicaToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// holderPID is the process of a run's lease holder ("host pid N #seq").
var holderPID = regexp.MustCompile(`pid (\d+) #`)

// newReplicaSet starts PostgreSQL and a slapd holding ten small domains
// (ou=D01…ou=D10, dNN.example, 30 users each) and a large one (ou=Big,
// big.example, 20,000 users), makes the ten small ones store-kept domains
// synced every 2s, and starts three replicas.
func newReplicaSet(t *testing.T) *replicaSet {
	t.Helper()
	dir := t.TempDir()
	ldif := filepath.Join(dir, "dir.ldif")
	f, err := os.Create(ldif)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= smallDomains; i++ {
		if err := slapd.GenerateDirectory(f, slapd.GenOptions{Domain: fmt.Sprintf("d%02d.example", i),
			Container: fmt.Sprintf("ou=D%02d", i), Users: smallUsers, WithBase: i == 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := slapd.GenerateDirectory(f, slapd.GenOptions{Domain: "big.example", Container: "ou=Big", Users: bigUsers}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	srv := peertest.Slapd(t, slapd.Options{LDIF: []string{ldif}, LogLevel: "none", StartTimeout: 5 * time.Minute})
	pg := pgtest.Start(t)
	r := &replicaSet{env: &env{t: t, srv: srv, dir: dir}, pg: pg, dsn: pg.NewDatabase(t)}
	r.write("admin.pw", srv.AdminPassword+"\n")
	r.write("secret.key", secrets.NewKey()+"\n")
	r.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n")
	for i := range 3 {
		listen := freeAddr(t)
		r.configs = append(r.configs, r.write(fmt.Sprintf("replica%d.toml", i), fmt.Sprintf(`
[store]
driver = "postgres"
dsn = %q
[plugins]
manifest = "plugin.toml"
cache_dir = "cache%d"
[serve]
lease_ttl = %q
max_concurrent_runs = 2
[api]
listen = %q
[[api.token]]
name = "panel"
sha256 = "%x"
role = "admin"
domains = ["*"]
[secrets]
key_file = "secret.key"
`, r.dsn, i, replicaTTL.String(), listen, sha256.Sum256([]byte(replicaToken)))))
	}
	r.config = r.configs[0]
	for i := 1; i <= smallDomains; i++ {
		filter := "" // the default: every user of the OU
		if i == 1 {
			// d01 starts with a third of its users; the test widens it
			// through one replica's API while the replicas run.
			filter = "ldap.filter=(&(sAMAccountType=805306368)(sAMAccountName=user00000*))"
		}
		args := []string{"domain", "add", fmt.Sprintf("d%02d.example", i), "policy=standard", "sync=true",
			"interval=" + replicaPeriod.String(), fmt.Sprintf("ldap.urls=[%q]", srv.URL), "ldap.bind_dn=" + srv.AdminDN,
			fmt.Sprintf("ldap.base_dn=ou=D%02d,%s", i, srv.BaseDN), "--password-file", filepath.Join(dir, "admin.pw")}
		if filter != "" {
			args = append(args, filter)
		}
		r.ok(args...)
	}
	st, err := postgres.Open(context.Background(), r.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r.st = st
	for i := range 3 {
		r.procs = append(r.procs, r.startServe(r.configs[i], addrOf(r.configs[i])))
	}
	return r
}

// addrOf reads [api] listen of a replica's config.
func addrOf(cfg string) string {
	b, _ := os.ReadFile(cfg)
	m := regexp.MustCompile(`listen = "([^"]+)"`).FindSubmatch(b)
	return string(m[1])
}

// checkNoOverlap fails the test where two runs of a domain overlap in time,
// or two started within half an interval of each other (a slot run twice).
// Attempts that never held the domain (failed at reading its settings or
// at taking its lease) are left out.
func checkNoOverlap(t *testing.T, domain string, all []store.Run) {
	t.Helper()
	var runs []store.Run
	for _, r := range all {
		if r.Stage != "store" && r.Stage != "lease" {
			runs = append(runs, r)
		}
	}
	for i := 1; i < len(runs); i++ {
		prev, cur := runs[i-1], runs[i]
		end := prev.Ended
		if end.IsZero() {
			end = time.Now()
		}
		if cur.Started.Before(end) {
			t.Errorf("%s: run %d (%s, started %s) overlaps run %d (%s, %s – %s)", domain, cur.ID, cur.Outcome,
				cur.Started.Format(time.StampMilli), prev.ID, prev.Outcome, prev.Started.Format(time.StampMilli), end.Format(time.StampMilli))
		}
		if prev.Outcome == store.OutcomeOK && cur.Outcome == store.OutcomeOK && cur.Started.Sub(prev.Started) < replicaPeriod/2 {
			t.Errorf("%s: runs %d and %d started %v apart: one slot ran twice", domain, prev.ID, cur.ID, cur.Started.Sub(prev.Started))
		}
	}
}

// TestReplicas runs three `dirsync serve` replicas on one PostgreSQL store
// and one slapd: ten domains synced every 2s for 60s (no two runs of a
// domain overlap, no slot runs twice or is missed, the replicas share the
// work, a settings change through one replica's API is used by the next
// run whatever replica makes it); then a replica SIGKILLed in the middle
// of a 20,000-user first sync (the store as before that run, the run
// recorded as abandoned, the domain synced by another replica within
// lease_ttl + interval); then PostgreSQL halted for 10s under the two
// left (the runs of that window fail and are recorded once it is back,
// nothing half-applied, the replicas serve on).
func TestReplicas(t *testing.T) {
	r := newReplicaSet(t)
	start := time.Now()

	// A settings change through replica 0's API, 20s in.
	time.Sleep(20 * time.Second)
	narrow := r.mailboxCount("d01.example")
	code, body := r.procs[0].api("PUT", "/domains/d01.example/settings", map[string]any{
		"name": "d01.example", "sync": true, "policy": "standard", "interval": replicaPeriod.String(), "version": 1,
		"ldap": map[string]any{"urls": []string{r.srv.URL}, "bind_dn": r.srv.AdminDN, "base_dn": "ou=D01," + r.srv.BaseDN},
	})
	if code != 200 {
		t.Fatalf("PUT settings: %d %s", code, body)
	}
	changed := time.Now()
	time.Sleep(time.Until(start.Add(60 * time.Second)))
	end := time.Now()

	holders := map[string]bool{}
	for i := 1; i <= smallDomains; i++ {
		domain := fmt.Sprintf("d%02d.example", i)
		runs := r.runsOf(domain)
		checkNoOverlap(t, domain, runs)
		var starts []time.Time
		for _, run := range runs {
			if run.Outcome != store.OutcomeOK && run.Outcome != store.OutcomeRunning {
				t.Errorf("%s: run %d %s at %s: %s", domain, run.ID, run.Outcome, run.Stage, run.Error)
			}
			if m := holderPID.FindStringSubmatch(run.Holder); m != nil {
				holders[m[1]] = true
			}
			starts = append(starts, run.Started)
		}
		// Every slot from the first run on ran: no gap of two intervals.
		if len(starts) < 20 {
			t.Errorf("%s: %d runs in 60s with an interval of %v", domain, len(starts), replicaPeriod)
		}
		for j := 1; j < len(starts); j++ {
			if gap := starts[j].Sub(starts[j-1]); gap >= 2*replicaPeriod-300*time.Millisecond {
				t.Errorf("%s: %v between runs %d and %d: a slot was missed", domain, gap.Round(time.Millisecond), runs[j-1].ID, runs[j].ID)
			}
		}
		if last := starts[len(starts)-1]; end.Sub(last) > 2*replicaPeriod {
			t.Errorf("%s: no run in the last %v", domain, end.Sub(last).Round(time.Millisecond))
		}
		if i == 1 {
			var first *store.Run
			for k := range runs {
				if runs[k].SettingsVersion == 2 && first == nil {
					first = &runs[k]
				}
				if first != nil && runs[k].SettingsVersion != 2 {
					t.Errorf("d01: run %d after version 2 ran with version %d", runs[k].ID, runs[k].SettingsVersion)
				}
			}
			switch {
			case first == nil:
				t.Errorf("d01: no run used the settings saved through replica 0's API")
			case first.Started.Sub(changed) > replicaPeriod+time.Second:
				t.Errorf("d01: the first run with the new settings started %v after the change", first.Started.Sub(changed))
			case narrow == 0 || narrow == smallUsers || first.Counts.Created != smallUsers-narrow:
				t.Errorf("d01: the first run with the wider filter created %d mailboxes (%d before), want %d", first.Counts.Created, narrow, smallUsers-narrow)
			}
		}
		if n := r.mailboxCount(domain); n != smallUsers {
			t.Errorf("%s holds %d mailboxes, want %d", domain, n, smallUsers)
		}
	}
	if len(holders) < 2 {
		t.Errorf("the runs were made by %d replica(s) (%v): the replicas do not share the schedule", len(holders), holders)
	}
	if t.Failed() {
		return
	}

	// A replica killed in the middle of a 20,000-user first sync.
	r.ok("domain", "add", "big.example", "policy=standard", "sync=true", "interval="+replicaPeriod.String(),
		fmt.Sprintf("ldap.urls=[%q]", r.srv.URL), "ldap.bind_dn="+r.srv.AdminDN, "ldap.base_dn=ou=Big,"+r.srv.BaseDN,
		"--password-file", filepath.Join(r.dir, "admin.pw"))
	writing := regexp.MustCompile(`msg="writing to the store" domain=big.example run=(\d+)`)
	var (
		victim int
		runID  string
	)
	r.procs[0].eventually(2*time.Minute, "a replica writing big.example to the store", func() bool {
		for i, p := range r.procs {
			if m := writing.FindStringSubmatch(p.log.String()); m != nil {
				victim, runID = i, m[1]
				return true
			}
		}
		return false
	})
	time.Sleep(100 * time.Millisecond)
	if err := r.procs[victim].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-r.procs[victim].done
	killed := time.Now()
	if n := r.mailboxCount("big.example"); n != 0 {
		t.Fatalf("after the kill big.example holds %d mailboxes, want none (the run's transaction lost)", n)
	}
	survivors := slices.Delete(slices.Clone(r.procs), victim, victim+1)
	var synced *store.Run
	survivors[0].eventually(2*time.Minute, "big.example synced by another replica", func() bool {
		for _, run := range r.runsOf("big.example") {
			if run.Outcome == store.OutcomeOK {
				synced = &run
				return true
			}
		}
		return false
	})
	if wait := synced.Started.Sub(killed); wait > replicaTTL+replicaPeriod+time.Second {
		t.Errorf("big.example was taken over %v after the kill, want within lease_ttl + interval (%v)", wait, replicaTTL+replicaPeriod)
	}
	for _, run := range r.runsOf("big.example") {
		if fmt.Sprint(run.ID) == runID && run.Outcome != store.OutcomeAbandoned {
			t.Errorf("the killed run %d is %q, want abandoned", run.ID, run.Outcome)
		}
	}
	if n := r.mailboxCount("big.example"); n != bigUsers {
		t.Errorf("big.example holds %d mailboxes after the takeover, want %d", n, bigUsers)
	}

	// PostgreSQL halted for 10s under the two replicas left.
	if err := r.pg.Halt(); err != nil {
		t.Fatal(err)
	}
	halted := time.Now()
	time.Sleep(10 * time.Second)
	if err := r.pg.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	time.Sleep(3 * replicaPeriod)
	for _, p := range survivors {
		select {
		case <-p.done:
			t.Fatalf("a replica exited while the database was down: %v", p.err)
		default:
		}
		if code, _ := p.get("/healthz"); code != 200 {
			t.Errorf("/healthz of a replica after the database came back: %d", code)
		}
	}
	failedInWindow := 0
	for i := 1; i <= smallDomains; i++ {
		domain := fmt.Sprintf("d%02d.example", i)
		runs := r.runsOf(domain)
		checkNoOverlap(t, domain, runs)
		okAfter := false
		for _, run := range runs {
			in := run.Started.After(halted) && run.Started.Before(resumed)
			if in && run.Outcome == store.OutcomeFailed {
				failedInWindow++
			}
			if run.Started.After(resumed) && run.Outcome == store.OutcomeOK {
				okAfter = true
			}
		}
		if !okAfter {
			t.Errorf("%s: no successful run after the database came back", domain)
		}
		if n := r.mailboxCount(domain); n != smallUsers {
			t.Errorf("%s holds %d mailboxes after the outage, want %d", domain, n, smallUsers)
		}
	}
	if failedInWindow == 0 {
		t.Errorf("no failed run recorded for the 10s the database was down")
	}
	if n := r.mailboxCount("big.example"); n != bigUsers {
		t.Errorf("big.example holds %d mailboxes after the outage, want %d", n, bigUsers)
	}
	for _, p := range survivors {
		p.stop(syscall.SIGTERM)
	}
}
